"""Speaker normalisation with online running statistics (speech_norm="speaker", fdrl_core.speaker_norm):
the reference on a stream's first utterance is the utterance's own mean, it follows a change of speaker
within a few utterances, partial passes never change it; training, evaluation and every backend see the
same normalised frames; models with other speech_norm values behave exactly as before."""

import io
import json
import time

import numpy as np
import pytest

from fdrl_core.config import FDRLConfig
from fdrl_core.speaker_norm import SpeakerNorm, running_references, utterance_stats, warmup_reference


def _voice(rng, base, n=30, emotion=0.0):
    """[n, 8] frames around a voice baseline, shifted by an 'emotion' offset."""
    return (base + emotion + 0.1 * rng.standard_normal((n, base.shape[0]))).astype(np.float32)


def test_first_utterance_reference_is_its_own_mean(rng):
    x = rng.standard_normal((25, 8)).astype(np.float32) + 3.0
    norm = SpeakerNorm()
    np.testing.assert_allclose(norm.reference(x), x.mean(0), atol=1e-6)
    np.testing.assert_allclose(norm.normalise(x), x - x.mean(0), atol=1e-5)  # = speech_norm="utterance"
    assert norm.reference(np.zeros((0, 8), np.float32)) is None  # nothing known yet
    assert norm.normalise(np.zeros((0, 8), np.float32)).shape == (0, 8)


def test_partial_passes_do_not_change_the_state(rng):
    norm = SpeakerNorm()
    norm.commit(_voice(rng, np.ones(8)))
    x = _voice(rng, np.ones(8), emotion=0.5)
    first = norm.reference(x)
    for _ in range(5):  # a growing utterance is classified again and again before its final
        norm.normalise(x[: rng.integers(1, len(x))])
    np.testing.assert_array_equal(norm.reference(x), first)
    assert norm.utterances == 1


def test_the_reference_keeps_the_emotion_offset_that_utterance_norm_removes(rng):
    base = rng.standard_normal(8) * 3
    norm = SpeakerNorm()
    for e in (0.0, 0.0, 0.0, 0.0):
        norm.commit(_voice(rng, base, emotion=e))
    angry = _voice(rng, base, emotion=1.0)
    kept = norm.normalise(angry).mean(0)  # the offset from the speaker's baseline survives (most of it)
    assert np.all(kept > 0.6) and np.abs(SpeakerNorm().normalise(angry).mean(0)).max() < 1e-5


def test_speaker_std_also_scales_by_the_running_spread(rng):
    x = (rng.standard_normal((400, 8)) * 3 + 5).astype(np.float32)
    y = SpeakerNorm.for_mode("speaker_std").normalise(x)  # first utterance: = speech_norm="utterance_std"
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(0), 1, atol=1e-3)
    assert SpeakerNorm.for_mode("speaker").scale is False


def test_a_change_of_speaker_is_followed_within_a_few_utterances(rng):
    a, b = np.full(8, -5.0), np.full(8, 5.0)
    norm = SpeakerNorm()
    for _ in range(10):
        norm.commit(_voice(rng, a))
    share_of_a = []
    for _ in range(4):
        x = _voice(rng, b)
        share_of_a.append(float(np.mean((b - norm.reference(x)) / (b - a))))
        norm.commit(x)
    assert share_of_a == sorted(share_of_a, reverse=True)
    assert share_of_a[0] < 0.75 and share_of_a[3] < 0.3, share_of_a  # B's own first utterance already counts


def test_a_revised_final_replaces_its_earlier_commit(rng):
    once, twice = SpeakerNorm(), SpeakerNorm()
    x0, early, revised = _voice(rng, np.zeros(8)), _voice(rng, np.ones(8)), _voice(rng, np.ones(8) * 2)
    for n in (once, twice):
        n.commit(x0, key=0)
    once.commit(revised, key=1)
    twice.commit(early, key=1)  # early final, then speech resumed and the utterance's final was revised
    twice.commit(revised, key=1)
    np.testing.assert_allclose(twice.reference(x0), once.reference(x0))
    assert twice.utterances == once.utterances == 2


def test_training_references_simulate_the_run_time_warm_up(rng):
    means = [utterance_stats(_voice(rng, np.full(8, float(i % 2)))) for i in range(6)]
    groups = ["a", "b", "a", "b", "a", None]
    refs = running_references(means, groups, 0.7)
    # evaluation: exactly what one run-time stream per speaker gives, in order
    streams = {"a": SpeakerNorm(0.7), "b": SpeakerNorm(0.7)}
    for m, g, r in zip(means, groups, refs):
        norm = streams[g] if g else SpeakerNorm(0.7)
        np.testing.assert_allclose(r, norm.pooled(m))
        norm.commit_stats(m)
    np.testing.assert_allclose(refs[5], means[5])  # an item alone: its own mean
    # training: no others -> the utterance's own mean; others -> what a stream would hold after them
    np.testing.assert_allclose(warmup_reference(means[0], []), means[0])
    stream = SpeakerNorm(0.7)
    for m in (means[2], means[4]):
        stream.commit_stats(m)
    np.testing.assert_allclose(warmup_reference(means[0], [means[2], means[4]], 0.7),
                               stream.pooled(means[0]))


def test_training_dataset_redraws_references_per_epoch_and_evaluation_is_deterministic(tmp_path, rng):
    from train.data import FeatureDataset, SpeakerReferences
    from train.features import FeatureEntry

    entries = []
    for i in range(8):
        sp, tx = tmp_path / f"s{i}.npy", tmp_path / f"t{i}.npy"
        np.save(sp, _voice(rng, np.full(8, 2.0), n=10 + i, emotion=0.3 * (i % 4)).astype(np.float16))
        np.save(tx, rng.standard_normal((5, 8)).astype(np.float16))
        entries.append(FeatureEntry(sp, tx))
    groups = ["v"] * 8
    train = FeatureDataset(entries, [0] * 8, references=SpeakerReferences(entries, groups, mode="warmup", decay=0.7,
                                                                          context=8, seed=0))
    seen = set()
    for epoch in range(6):
        train.set_epoch(epoch)
        a, b = train[3][0].numpy(), train[3][0].numpy()
        np.testing.assert_array_equal(a, b)  # a function of (seed, epoch, item) only: resumable
        seen.add(round(float(a.mean()), 4))
    assert len(seen) > 1  # k and the pooled utterances change between epochs
    val = FeatureDataset(entries, [0] * 8, references=SpeakerReferences(entries, groups, mode="running", decay=0.7))
    first = val[0][0].numpy()
    np.testing.assert_allclose(first.mean(0), 0, atol=1e-3)  # first utterance: utterance norm
    assert abs(float(val[3][0].numpy().mean())) > 0.05  # later ones keep their offset from the speaker's mean


def test_config_validates_and_old_configs_load_unchanged():
    cfg = FDRLConfig(speech_norm="speaker")
    assert FDRLConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="speech_norm"):
        FDRLConfig(speech_norm="speakers")
    with pytest.raises(ValueError, match="speaker_decay"):
        FDRLConfig(speech_norm="speaker", speaker_decay=1.0)
    old = FDRLConfig(speech_norm="utterance").to_dict()
    for k in ("speaker_decay", "speaker_context"):
        old.pop(k)
    assert FDRLConfig.from_dict(old).speech_norm == "utterance"


def test_the_model_graph_does_no_mean_removal_for_speaker_norm(rng):
    """The normalisation happens before the graph; inside it, "speaker" is the same network as "none"."""
    import torch

    from fdrl_core.model import FDRL

    x = torch.from_numpy(_voice(rng, np.full(384, 2.0), n=20)).unsqueeze(0)
    m = torch.ones(1, 20, dtype=torch.bool)
    torch.manual_seed(0)
    none = FDRL(FDRLConfig(d_model=32, heads=2, fusion_heads=2, speech_norm="none")).eval()
    spk = FDRL(FDRLConfig(d_model=32, heads=2, fusion_heads=2, speech_norm="speaker")).eval()
    spk.load_state_dict(none.state_dict())
    with torch.no_grad():
        assert torch.equal(none(x, m, None, None).logits, spk(x, m, None, None).logits)


# ------------------------------------------------------------------------------------------ run time


@pytest.fixture(scope="module")
def speaker_model(tmp_path_factory):
    """A random speech_norm="speaker" checkpoint and its ONNX export."""
    pytest.importorskip("onnxruntime")
    import torch

    from export.onnx_export import export_onnx
    from fdrl_core.checkpoint import save_checkpoint
    from fdrl_core.model import FDRL

    torch.manual_seed(0)
    ckpt = save_checkpoint(FDRL(FDRLConfig(d_model=64, heads=2, speech_norm="speaker", speaker_decay=0.6)).eval(),
                           tmp_path_factory.mktemp("spk") / "ckpt")
    export_onnx(ckpt, ckpt / "onnx", log=lambda msg: None)
    return ckpt


def _stream_of_utterances(seed=1):
    """Two voices, then a change of speaker: what one live stream might hear."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(384) * 2, rng.standard_normal(384) * 2
    return [_voice(rng, v, n=n, emotion=e * rng.standard_normal(384))
            for v, n, e in ((a, 40, 0.0), (a, 75, 0.5), (a, 12, 1.0), (b, 60, 0.0), (b, 33, 0.7))]


def test_torch_and_onnxruntime_agree_on_a_stream_of_utterances(speaker_model):
    from stream.emotion import EmotionConfig, EmotionStage

    stages = [EmotionStage(EmotionConfig(backend=b, model=str(p)))
              for b, p in (("torch", speaker_model), ("onnxruntime", speaker_model / "onnx"))]
    states = [s.speaker_state() for s in stages]
    assert all(st is not None and st.decay == 0.6 for st in states)  # the decay travels in the ONNX sidecar
    texts = ["I am so happy to see you", None, "leave me alone", "the bus is late", None]
    raw = stages[0].backend
    for i, (frames, text) in enumerate(zip(_stream_of_utterances(), texts)):
        outs = [stage.classify(frames, text, speaker=st)[0] for stage, st in zip(stages, states)]
        assert max(abs(outs[0].probs[k] - outs[1].probs[k]) for k in outs[0].probs) <= 1e-4
        assert outs[0].label == outs[1].label
        if i == 0:  # first utterance: the utterance's own mean, like the stateless call
            assert stages[0].classify(frames, text)[0].probs == pytest.approx(outs[0].probs, abs=1e-6)
        else:  # later ones: the running reference, not the raw frames
            assert raw.predict(frames, text).probs != pytest.approx(outs[0].probs, abs=1e-6)
        for st in states:
            st.commit(frames, key=i)
    assert [st.utterances for st in states] == [5, 5]


def test_old_models_are_unaffected(ckpt, rng):
    """A checkpoint without speaker normalisation: no stream state, the frames reach the backend untouched."""
    from stream.emotion import EmotionConfig, EmotionStage

    stage = EmotionStage(EmotionConfig(backend="torch", model=str(ckpt)))
    assert stage.backend.speech_norm == "none" and stage.speaker_state() is None
    frames = _voice(rng, np.full(384, 1.0), n=50)
    np.testing.assert_array_equal(stage.prepare(frames, None), frames)
    assert stage.classify(frames, "hello there")[0].probs == stage.backend.predict(frames, "hello there").probs


def test_the_pipeline_keeps_one_state_per_stream_and_commits_finals(speaker_model, spoken, speech_frontend):
    from stream.asr import AsrConfig, Recognizer
    from stream.config import PipelineConfig
    from stream.emotion import EmotionConfig, EmotionStage
    from stream.pipeline import Pipeline
    from stream.publisher import Publisher
    from stream.sources import FileSource
    from tests.test_stream_support import Collector, free_endpoint

    seen = []

    class Recording(EmotionStage):
        def classify(self, frames, text, audio=None, no_speech_prob=None, speaker=None):
            seen.append(None if speaker is None else (id(speaker), speaker.utterances))
            return super().classify(frames, text, audio=audio, no_speech_prob=no_speech_prob, speaker=speaker)

    ep = free_endpoint()
    cfg = PipelineConfig(asr=AsrConfig(partial_every_s=0), emotion=EmotionConfig(model=str(speaker_model)), endpoint=ep)
    pub, sub = Publisher(ep), Collector(ep)
    try:
        time.sleep(0.3)
        pipe = Pipeline(cfg, FileSource(spoken), Recognizer(cfg.asr, frontend=speech_frontend),
                        Recording(cfg.emotion), pub, log=io.StringIO())
        state = pipe.streams[0].speaker
        assert state is not None
        assert pipe.run() == 0
        sub.wait_for(lambda t, m: t == "status" and m["kind"] == "stop", 5)
    finally:
        pub.close()
        sub.close()
    assert len(sub.finals()) == 2
    assert seen == [(id(state), 0), (id(state), 1)]  # the second utterance sees the first one's statistics
    assert state.utterances == 2
    json.dumps([m for _, m in sub.messages])
