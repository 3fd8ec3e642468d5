"""Utterance-sized encoder windows: one policy for training features and run time."""

import json

import numpy as np
import pytest

from fdrl_core.audio import SAMPLE_RATE
from fdrl_core.speech_frontend import DEFAULT_WINDOW, WindowPolicy, window_for_model, window_from_meta

SR = SAMPLE_RATE


def test_window_is_the_smallest_bucket_covering_utterance_plus_margin_above_the_floor():
    p = WindowPolicy(floor_s=5, margin_s=1, buckets_s=(5, 10, 15, 20, 30))
    assert p.window_s(2 * SR) == 5
    assert p.window_s(int(4.5 * SR)) == 10  # 4.5 s + 1 s margin does not fit 5 s
    assert p.window_s(12 * SR) == 15
    assert p.window_s(29 * SR) == 30 and p.window_s(60 * SR) == 30  # capped at Whisper's 30 s
    assert WindowPolicy(floor_s=10, margin_s=1).window_s(SR) == 10
    assert p.mel_frames(2 * SR) == 500
    assert WindowPolicy.legacy().window_s(SR) == 30 and WindowPolicy.legacy().mel_frames(SR) == 3000


def test_policy_round_trips_and_a_model_without_one_is_legacy():
    assert WindowPolicy.from_dict(DEFAULT_WINDOW.to_dict()) == DEFAULT_WINDOW
    assert WindowPolicy.from_dict(None) == WindowPolicy.legacy()
    assert window_from_meta({}) == WindowPolicy.legacy()
    assert window_from_meta({"frontends": {"speech": {"window": DEFAULT_WINDOW.to_dict()}}}) == DEFAULT_WINDOW
    with pytest.raises(ValueError, match="window"):
        WindowPolicy.from_dict({"floor_s": 5})
    with pytest.raises(ValueError, match="buckets"):
        WindowPolicy(buckets_s=(40,))


def test_run_time_reads_the_policy_of_the_model_it_loads(tmp_path):
    policy = WindowPolicy(floor_s=15, margin_s=0.5)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "meta.json").write_text(json.dumps({"frontends": {"speech": {"window": policy.to_dict()}}}))
    assert window_for_model(ckpt) == policy
    old = tmp_path / "old"
    old.mkdir()
    (old / "meta.json").write_text(json.dumps({"frontends": {"speech": {"kind": "whisper-ct2-encoder"}}}))
    assert window_for_model(old) == WindowPolicy.legacy()
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "fdrl.json").write_text(json.dumps({"extra": {"speech_window": policy.to_dict()}}))
    assert window_for_model(onnx) == policy
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    (tmp_path / "model.engine.json").write_text(json.dumps({"onnx_dir": str(onnx)}))
    assert window_for_model(engine) == policy


def test_mixed_lengths_batch_by_window_and_match_single_encodes(speech_frontend):
    rng = np.random.default_rng(0)
    short = (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)
    long = (0.1 * rng.standard_normal(12 * SR)).astype(np.float32)
    policy = WindowPolicy(floor_s=5, margin_s=1, buckets_s=(5, 10, 15, 20, 30))
    assert speech_frontend.window_groups([len(short), len(long), len(short)], policy) == {500: [0, 2], 1500: [1]}
    enc = speech_frontend.encode(long, policy)
    assert np.asarray(enc).shape[1] == 750  # 15 s window: 750 encoder frames, not 1500
    batch = speech_frontend.frames_batch([short, long], policy)
    np.testing.assert_allclose(batch[0], speech_frontend.frames(encoder_output=speech_frontend.encode(short, policy),
                                                                 num_samples=len(short)), atol=1e-3)
    assert batch[1].shape == (12 * SR // 320, speech_frontend.dim)
    with pytest.raises(ValueError, match="one encoder window"):
        speech_frontend.encode([short, long], policy)


def test_feature_cache_identity_carries_the_window(tmp_path):
    from train.features import FeatureCache, FrontendOptions

    new = FeatureCache(tmp_path, FrontendOptions()).speech_identity
    legacy = FeatureCache(tmp_path, FrontendOptions(window=WindowPolicy.legacy())).speech_identity
    assert new["window"] == DEFAULT_WINDOW.to_dict() and "window" not in legacy  # old caches stay valid
    assert new["key"] != legacy["key"]
    assert window_from_meta({"frontends": {"speech": legacy}}) == WindowPolicy.legacy()
    assert window_from_meta({"frontends": {"speech": new}}) == DEFAULT_WINDOW
