"""Run-time emotion backends: agreement, speech-only semantics, auto selection, errors, no torch on the edge."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from tests.test_export import DEV, _fake_engine, exported_model, needs_tensorrt  # noqa: E402  (one export per session)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return exported_model(tmp_path_factory)


@pytest.fixture(scope="module")
def backends(exported):
    from stream.backends import open_backend

    return open_backend("torch", exported["ckpt"]), open_backend("onnxruntime", exported["onnx"])


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    frames = [rng.standard_normal((n, 384)).astype(np.float32) for n in (150, 37, 400, 1, 90)]
    texts = ["I am so happy to see you again", "", None, "no", "   "]
    return frames, texts


def test_torch_and_onnxruntime_agree(backends):
    torch_b, ort_b = backends
    assert (torch_b.name, ort_b.name) == ("torch", "onnxruntime")
    assert torch_b.labels == ort_b.labels == ("neutral", "happy", "angry", "sad")
    frames, texts = _inputs()
    for a, b in zip(torch_b.predict_batch(frames, texts), ort_b.predict_batch(frames, texts)):
        assert max(abs(a.probs[k] - b.probs[k]) for k in a.probs) <= 1e-4
        assert a.label == b.label and a.modalities == b.modalities
        assert a.confidence == pytest.approx(max(a.probs.values()))
        assert sum(b.probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_batching_and_padding_do_not_change_predictions(backends):
    _, ort_b = backends
    frames, texts = _inputs(1)
    batched = ort_b.predict_batch(frames, texts)
    for f, t, b in zip(frames, texts, batched):
        one = ort_b.predict(f, t)
        assert max(abs(one.probs[k] - b.probs[k]) for k in one.probs) <= 1e-5


def test_missing_text_means_speech_only(backends):
    torch_b, ort_b = backends
    frames, _ = _inputs(2)
    for backend in backends:
        results = backend.predict_batch(frames[:4], ["a transcript", None, "", " \n"])
        assert [r.modalities for r in results] == [("speech", "text"), ("speech",), ("speech",), ("speech",)]
    # "no text" is the same prediction however it is spelled
    none, empty = ort_b.predict(frames[0], None), ort_b.predict(frames[0], "")
    assert none.probs == pytest.approx(empty.probs, abs=1e-6)


def test_bad_frames_are_rejected_clearly(backends):
    _, ort_b = backends
    with pytest.raises(ValueError, match=r"\[T, 384\]"):
        ort_b.predict(np.zeros((10, 80), np.float32), "hi")
    with pytest.raises(ValueError, match="2 frame arrays but 1 texts"):
        ort_b.predict_batch([np.zeros((3, 384), np.float32)] * 2, ["x"])


# ----------------------------------------------------------------------------------------- auto selection


def _no_trt():
    return None, "TensorRT is not installed (test)"


def test_auto_prefers_onnxruntime_export_then_torch(exported, tmp_path):
    from fdrl_core.checkpoint import save_checkpoint
    from fdrl_core.config import FDRLConfig
    from fdrl_core.model import FDRL
    from stream.backends import plan

    ckpt, onnx_dir = exported["ckpt"], exported["onnx"]
    assert plan("auto", onnx_dir, device_probe=_no_trt)[0] == [("onnxruntime", onnx_dir)]
    assert plan("auto", ckpt, device_probe=_no_trt)[0] == [("onnxruntime", onnx_dir), ("torch", ckpt)]
    bare = save_checkpoint(FDRL(FDRLConfig(d_model=32, heads=2)), tmp_path / "bare")
    assert plan("auto", bare, device_probe=_no_trt)[0] == [("torch", bare)]
    # an export left over from an older version of the checkpoint is not used
    stale = save_checkpoint(FDRL(FDRLConfig(d_model=64)), tmp_path / "stale")
    (stale / "onnx").symlink_to(onnx_dir, target_is_directory=True)
    order, notes = plan("auto", stale, device_probe=_no_trt)
    assert order == [("torch", stale)] and "exported from another version" in notes[0]


def test_auto_uses_an_engine_only_when_it_fits_this_gpu(exported, tmp_path):
    from fdrl_core.engine_cache import DeviceInfo
    from fdrl_core.export_format import OnnxSidecar
    from stream.backends import plan

    onnx_dir = exported["onnx"]
    sha = OnnxSidecar.load(onnx_dir).onnx_sha256
    cache = tmp_path / "engines"
    other = _fake_engine(cache, "other.engine", sha, gpu="NVIDIA A100", cc="8.0")
    orin = DeviceInfo(*DEV)
    order, notes = plan("auto", onnx_dir, engine_cache=cache, device_probe=lambda: (orin, None))
    assert order == [("onnxruntime", onnx_dir)]
    assert "built for NVIDIA A100 (compute 8.0), this GPU is Orin (compute 8.7)" in notes[0]

    fits = _fake_engine(cache, "orin.engine", sha)
    order, _ = plan("auto", onnx_dir, engine_cache=cache, device_probe=lambda: (orin, None))
    assert order == [("tensorrt", fits), ("onnxruntime", onnx_dir)]
    order, notes = plan("auto", onnx_dir, engine_cache=cache, device_probe=_no_trt)
    assert order == [("onnxruntime", onnx_dir)] and "TensorRT is not installed" in notes[-1]
    # an engine given directly, on a machine without TensorRT: the export it came from
    json_path = other.with_name(other.name + ".json")
    json_path.write_text(json.dumps({**json.loads(json_path.read_text()), "onnx_dir": str(onnx_dir)}))
    order, notes = plan("auto", other, device_probe=_no_trt)
    assert order == [("onnxruntime", onnx_dir)] and "not using TensorRT engine other.engine" in notes[0]


def test_auto_falls_back_to_onnxruntime_with_a_warning(exported, tmp_path, caplog):
    from fdrl_core.export_format import OnnxSidecar
    from stream.backends import open_backend

    sha = OnnxSidecar.load(exported["onnx"]).onnx_sha256
    engine = _fake_engine(tmp_path, "fdrl.engine", sha, gpu="NVIDIA A100", cc="8.0")
    side = engine.with_name(engine.name + ".json")
    side.write_text(json.dumps({**json.loads(side.read_text()), "onnx_dir": str(exported["onnx"])}))
    with caplog.at_level(logging.WARNING, logger="stream.backends"):
        backend = open_backend("auto", engine)
    assert backend.name == "onnxruntime"
    assert any("TensorRT" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------------------- errors


def test_backend_errors_are_one_clear_line(exported, tmp_path):
    from fdrl_core.engine_cache import DeviceInfo
    from fdrl_core.export_format import OnnxSidecar
    from stream.backends import BackendError, TensorRTBackend, open_backend

    with pytest.raises(BackendError, match="model not found"):
        open_backend("auto", tmp_path / "nope")
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(BackendError, match="is not a model: expected an FDRL checkpoint folder"):
        open_backend("auto", junk)
    with pytest.raises(BackendError, match="is not a model folder"):
        open_backend("onnxruntime", tmp_path)
    with pytest.raises(BackendError, match="torch backend needs a checkpoint folder"):
        open_backend("torch", exported["onnx"])
    with pytest.raises(BackendError, match="unknown backend"):
        open_backend("tflite", exported["onnx"])

    # an engine built for another GPU: refused before TensorRT ever sees it, with the reason
    sha = OnnxSidecar.load(exported["onnx"]).onnx_sha256
    engine = _fake_engine(tmp_path / "e", "fdrl.engine", sha, gpu="NVIDIA GeForce RTX 3090", cc="8.6")
    side = engine.with_name(engine.name + ".json")
    side.write_text(json.dumps({**json.loads(side.read_text()), "onnx_dir": str(exported["onnx"])}))
    with pytest.raises(BackendError) as err:
        TensorRTBackend(engine, device_info=DeviceInfo(*DEV))
    msg = str(err.value)
    assert "\n" not in msg
    assert "built for NVIDIA GeForce RTX 3090 (compute 8.6), this GPU is Orin (compute 8.7)" in msg
    with pytest.raises(BackendError, match="cannot find the ONNX export folder"):
        TensorRTBackend(_fake_engine(tmp_path / "lonely", "x.engine", sha), device_info=DeviceInfo(*DEV))


# ----------------------------------------------------------------------------------------- edge run-time

TORCH_FREE = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, Block())
import numpy as np
from stream.backends import open_backend
backend = open_backend("onnxruntime", sys.argv[1])
r = backend.predict(np.random.default_rng(0).standard_normal((150, 384)).astype(np.float32), "I am thrilled")
s = backend.predict(np.zeros((20, 384), np.float32), None)
assert r.modalities == ("speech", "text") and s.modalities == ("speech",), (r, s)
bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]
assert not bad, bad
print("OK", r.label)
"""


def test_onnxruntime_backend_runs_without_torch_or_transformers(exported):
    out = subprocess.run([sys.executable, "-c", TORCH_FREE, str(exported["onnx"])], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("OK ")


@pytest.mark.gpu
@needs_tensorrt
def test_tensorrt_backend_is_torch_free(exported, tmp_path):
    from export.trt_build import BuildOptions, build_engine
    from fdrl_core.engine_cache import DeviceError, detect_device

    try:
        detect_device()
    except DeviceError as e:
        pytest.skip(str(e))
    engine = tmp_path / "fdrl.engine"
    build_engine(exported["onnx"], engine, BuildOptions(fp16=True), log=lambda m: None)
    script = TORCH_FREE.replace('open_backend("onnxruntime", sys.argv[1])', 'open_backend("tensorrt", sys.argv[1])')
    out = subprocess.run([sys.executable, "-c", script, str(engine)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
