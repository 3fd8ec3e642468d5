"""The training pipeline on a tiny espeak-ng corpus: metrics, feature cache, runs, resume, folds, ablations, CLI."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from train.metrics import classification_metrics, confusion_matrix, format_pm, mean_std, metrics_from_confusion

# A corpus small enough that the Whisper encoder (~0.3-1 s per utterance on a CPU) stays cheap:
# 2 voices x 4 emotions x 2 sentences; one voice trains, the other's first sentences validate and its second
# ones test. Wording and prosody both carry the emotion; one training transcript is empty (no-text path).
SENTENCES = {
    "neutral": ["The meeting is on Tuesday at ten.", "Please put the box on the table."],
    "happy": ["This is wonderful, I love it so much!", "We won the prize, how fantastic!"],
    "angry": ["Stop that right now, I am furious!", "This is outrageous and I hate it!"],
    "sad": ["I miss her so much, it hurts.", "Nobody came, and I am so lonely."],
}
PROSODY = {"neutral": (50, 160, 100), "happy": (85, 195, 150), "angry": (40, 215, 190), "sad": (20, 105, 60)}
VOICES = [("en-us", ("train", "train"), "s1"), ("en-gb", ("val", "test"), "s2")]


def make_tiny_corpus(root: Path) -> Path:
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for voice, splits, session in VOICES:
        for label, sentences in SENTENCES.items():
            pitch, speed, amp = PROSODY[label]
            for i, text in enumerate(sentences):
                uid = f"{voice}_{label}_{i}"
                subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-a", str(amp),
                                "-w", str(root / "wav" / f"{uid}.wav"), text], check=True)
                rows.append({"id": uid, "path": f"wav/{uid}.wav", "label": label, "speaker": voice,
                             "session": session, "split": splits[i],
                             "text": "" if (voice, label, i) == ("en-us", "sad", 1) else text})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    return make_tiny_corpus(tmp_path_factory.mktemp("tiny_corpus"))


@pytest.fixture(scope="session")
def utterances(tiny_corpus):
    from fdrl_core.labels import IEMOCAP4
    from train.corpora import load_corpus

    return load_corpus(tiny_corpus, labels=IEMOCAP4)


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("feature_cache")


@pytest.fixture(scope="session")
def features(utterances, feature_cache_dir, speech_frontend, text_frontend):
    """One extraction for the whole session: every other test reads this cache."""
    from train.features import FeatureCache

    cache = FeatureCache(feature_cache_dir, speech_frontend=speech_frontend, text_frontend=text_frontend)
    return cache, cache.build(utterances, progress=False)


def _ctx(features, **kw):
    from train.trainer import RunContext

    cache, index = features
    return RunContext(cache=cache, index=index, progress=False, command="pytest", **kw)


def _quick(**train):
    from fdrl_core.config import FDRLConfig
    from train.trainer import QUICK_MODEL, QUICK_TRAIN, TrainConfig, apply_overrides

    return apply_overrides(FDRLConfig(), TrainConfig(), {**QUICK_MODEL, **QUICK_TRAIN, **train})


# ------------------------------------------------------------------------------------------------ metrics


def test_ua_and_wa_differ_on_imbalanced_data():
    # 90 neutral, 10 sad; the model says "neutral" to everything
    y = [0] * 90 + [1] * 10
    m = classification_metrics(y, [0] * 100, ["neutral", "sad"])
    assert m["wa"] == pytest.approx(0.9)
    assert m["ua"] == pytest.approx(0.5)  # recall 1.0 and 0.0
    assert m["per_class_recall"] == {"neutral": 1.0, "sad": 0.0}
    assert m["macro_f1"] == pytest.approx((2 * 90 / 190 + 0.0) / 2)
    assert m["confusion"] == [[90, 0], [10, 0]]


def test_metrics_from_a_known_confusion_matrix():
    cm = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])  # class 2 never occurs and is never predicted
    m = metrics_from_confusion(cm, ["a", "b", "c"])
    assert m["n"] == 14 and m["wa"] == pytest.approx(11 / 14)
    assert m["ua"] == pytest.approx((0.8 + 0.75) / 2)  # absent class is not averaged in
    assert m["per_class_recall"]["c"] is None and m["support"] == {"a": 10, "b": 4, "c": 0}
    assert m["macro_f1"] == pytest.approx((16 / 19 + 6 / 9) / 2)
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1], [0, 0, 1], 3), [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix([0, 5], [0, 1], 3)
    assert format_pm(mean_std([0.7, 0.8])) == "75.00 ± 7.07"


# ------------------------------------------------------------------------------------------------ feature cache


def test_feature_cache_hits_misses_and_invalidates_on_changed_audio(tmp_path, utterances, features,
                                                                    speech_frontend, text_frontend, monkeypatch):
    from train.features import FeatureCache, FrontendOptions

    utts = [u for u in utterances if u.split == "test"][:2]
    for u in utts:  # private copies, so the session corpus stays untouched
        shutil.copy(u.path, tmp_path / Path(u.path).name)
    utts = [replace(u, path=str(tmp_path / Path(u.path).name)) for u in utts]
    calls = {"speech": 0, "text": 0}
    real_batch, real_text = speech_frontend.frames_batch, type(text_frontend).__call__

    def count_speech(audios, window=None):
        calls["speech"] += len(audios)
        return real_batch(audios, window)

    def count_text(self, texts):
        calls["text"] += len(texts)
        return real_text(self, texts)

    monkeypatch.setattr(speech_frontend, "frames_batch", count_speech)
    monkeypatch.setattr(type(text_frontend), "__call__", count_text)
    session_cache, session_index = features
    cache = FeatureCache(session_cache.root, speech_frontend=speech_frontend, text_frontend=text_frontend)

    # hit: the session already extracted these recordings (entries are keyed by content, not by path)
    index = cache.build(utts, progress=False)
    assert calls == {"speech": 0, "text": 0}
    assert [index[u.id] for u in utts] == [session_index[u.id] for u in utts]
    speech, text = cache.load(index[utts[0].id])
    assert speech.dtype == np.float32 and speech.shape[1] == 384 and text.shape[1] == 384
    assert np.load(index[utts[0].id].speech).dtype == np.float16  # stored as half, documented
    assert (cache.speech_dir() / "frontend.json").is_file()

    # the audio of one utterance changes (same path): its speech entry misses, its text entry still hits
    subprocess.run(["espeak-ng", "-w", utts[0].path, "a completely different recording"], check=True)
    changed = cache.build(utts, progress=False)
    assert calls == {"speech": 1, "text": 0}
    assert changed[utts[0].id].speech != index[utts[0].id].speech
    assert changed[utts[0].id].text == index[utts[0].id].text and changed[utts[1].id] == index[utts[1].id]
    assert cache.load(changed[utts[0].id])[0].shape != speech.shape
    assert cache.build(utts, progress=False) == changed and calls["speech"] == 1  # and now it hits

    # new text misses only the text entry; an interrupted write leaves no entry behind
    edited = [replace(utts[1], text="an edited transcript")]
    assert cache.build(edited, progress=False)[utts[1].id].speech == index[utts[1].id].speech
    assert calls == {"speech": 1, "text": 1}
    assert not list(cache.root.rglob(".tmp-*"))

    # another compute type or another weights file is another cache key (checked without loading a model)
    other = FeatureCache(tmp_path / "c", FrontendOptions(compute_type="float32"))
    assert other.speech_dir().name != cache.speech_dir().name and other.text_dir().name == cache.text_dir().name


def test_unreadable_audio_names_the_utterance(tmp_path, utterances, speech_frontend, text_frontend):
    from fdrl_core.audio import AudioError
    from train.features import FeatureCache

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav file at all")
    u = replace(utterances[0], id="broken_one", path=str(bad))
    cache = FeatureCache(tmp_path / "cache", speech_frontend=speech_frontend, text_frontend=text_frontend)
    with pytest.raises(AudioError, match="broken_one"):
        cache.build([u], progress=False)


def test_sampler_covers_every_item_in_length_buckets_and_resumes_mid_epoch():
    from train.data import ResumableSampler

    lengths = [int(x) for x in np.random.default_rng(0).integers(50, 1500, size=103)]
    s = ResumableSampler(range(103), seed=3, lengths=lengths, batch_size=8, pool_batches=4)
    s.set_epoch(1)
    order = list(s)
    assert sorted(order) == list(range(103))
    batches = [order[i: i + 8] for i in range(0, 103, 8)]
    padding = sum(8 * max(lengths[j] for j in b) - sum(lengths[j] for j in b) for b in batches[:-1])
    plain = ResumableSampler(range(103), seed=3)
    plain.set_epoch(1)
    unsorted = [list(plain)[i: i + 8] for i in range(0, 96, 8)]
    assert padding < 0.5 * sum(8 * max(lengths[j] for j in b) - sum(lengths[j] for j in b) for b in unsorted)
    s.set_epoch(1, start=40)  # resuming after 5 batches gives exactly the rest of the same epoch
    assert list(s) == order[40:]
    s.set_epoch(2)
    assert list(s) != order


# ------------------------------------------------------------------------------------------------ training


def test_training_writes_metrics_plots_and_a_loadable_checkpoint(tmp_path, utterances, features):
    from fdrl_core.checkpoint import load_checkpoint, read_meta
    from train.features import FeatureCache
    from train.trainer import corpus_splits, train_run

    cfg, tcfg = _quick()
    splits = corpus_splits(utterances, tcfg)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 4, 4)
    res = train_run(splits, tmp_path / "run", cfg, tcfg, _ctx(features))
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(res))
    for part in ("val", "test"):
        for key in ("wa", "ua", "macro_f1", "per_class_recall", "confusion"):
            assert key in metrics[part]
        assert metrics[part]["n"] == 4
        assert (run / f"confusion_{part}.png").stat().st_size > 1000
        assert len((run / f"predictions_{part}.jsonl").read_text().splitlines()) == 4
    assert (run / "curves.png").stat().st_size > 1000
    assert metrics["epochs_run"] == 2 and 1 <= metrics["best_epoch"] <= 2
    assert "train.log" in os.listdir(run) and "epoch 2" in (run / "train.log").read_text()

    model = load_checkpoint(run / "model")
    assert model.cfg.d_model == 64
    meta = read_meta(run / "model")
    assert meta["frontends"]["speech"]["weights_sha256"] and meta["seed"] == 0 and meta["command"] == "pytest"
    assert meta["metrics"]["test"]["ua"] == metrics["test"]["ua"]
    # the checkpoint reproduces the reported test predictions
    import torch

    speech, text = FeatureCache.load(features[1][splits.test[0].id])
    s, t = torch.from_numpy(speech)[None], torch.from_numpy(text)[None]
    with torch.no_grad():
        ones = torch.ones(1, s.shape[1], dtype=torch.bool), torch.ones(1, t.shape[1], dtype=torch.bool)
        logits = model(s, ones[0], t, ones[1]).logits
    probs = torch.softmax(logits / model.temperature, -1)  # predictions are calibrated (temperature on val)
    assert metrics["calibration"]["temperature"] == round(float(model.temperature), 4)
    assert (run / "reliability_test.png").stat().st_size > 1000
    first = json.loads((run / "predictions_test.jsonl").read_text().splitlines()[0])
    assert first["id"] == splits.test[0].id
    np.testing.assert_allclose(probs[0].numpy(), list(first["probs"].values()), atol=1e-4)


def test_resume_after_a_crash_gives_the_same_model(tmp_path, utterances, features, monkeypatch):
    from safetensors.numpy import load_file

    from fdrl_core.checkpoint import WEIGHTS
    from train.trainer import CRASH_ENV, _SimulatedCrash, corpus_splits, train_run

    # 8 training items, batch 4: 2 steps per epoch, 3 epochs; state saved every step and at each epoch end
    cfg, tcfg = _quick(epochs=3, batch_size=4, save_every=1)
    splits = corpus_splits(utterances, tcfg)
    straight = train_run(splits, tmp_path / "straight", cfg, tcfg, _ctx(features))

    # die right after step 4 (the end of epoch 2, before its validation and save): resumes from step 3
    monkeypatch.setenv(CRASH_ENV, "4")
    with pytest.raises(_SimulatedCrash):
        train_run(splits, tmp_path / "crashed", cfg, tcfg, _ctx(features))
    assert not (tmp_path / "crashed" / "metrics.json").exists()
    monkeypatch.delenv(CRASH_ENV)
    resumed = train_run(splits, tmp_path / "crashed", cfg, tcfg, _ctx(features))
    assert "resuming at epoch 2, step 1/2" in (tmp_path / "crashed" / "train.log").read_text()

    for key in ("val", "test", "best_epoch", "epochs_run"):
        assert resumed[key] == straight[key]
    assert json.loads((tmp_path / "crashed" / "history.json").read_text()) == \
        json.loads((tmp_path / "straight" / "history.json").read_text())
    a = load_file(str(tmp_path / "straight" / "model" / WEIGHTS))
    b = load_file(str(tmp_path / "crashed" / "model" / WEIGHTS))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    # a finished run is not trained again; a different setup in the same folder is refused
    again = train_run(splits, tmp_path / "crashed", cfg, tcfg, _ctx(features))
    assert again["test"] == straight["test"]
    with pytest.raises(ValueError, match="different setup.*lr"):
        train_run(splits, tmp_path / "crashed", cfg, replace(tcfg, lr=1e-3), _ctx(features))


def test_loso_folds_write_one_run_per_session_and_a_summary(tmp_path, utterances, features):
    from train.trainer import run_experiment

    cfg, tcfg = _quick(epochs=1)
    summary = run_experiment(utterances, tmp_path / "loso", cfg, tcfg, _ctx(features), folds="loso")
    assert sorted(summary["folds"]) == ["s1", "s2"]
    for s in ("s1", "s2"):
        assert (tmp_path / "loso" / f"fold-{s}" / "model" / "model.safetensors").is_file()
    assert summary["pooled"]["n"] == len(utterances)  # every utterance is tested exactly once
    assert summary["mean"]["ua"]["n"] == 2
    md = (tmp_path / "loso" / "summary.md").read_text()
    assert "mean ± std" in md and "pooled" in md
    assert json.loads((tmp_path / "loso" / "summary.json").read_text())["pooled"]["wa"] == summary["pooled"]["wa"]


def test_ablation_table_over_variants_and_seeds(tmp_path, utterances, features):
    from train.ablate import run_ablation

    cfg, tcfg = _quick(epochs=1)
    out = tmp_path / "ablate"
    summary = run_ablation(utterances, out, cfg, tcfg, _ctx(features), variants=["full", "text_only"],
                           seeds=[0, 1])
    assert summary["evaluated_on"] == "test"
    assert summary["variants"]["text_only"]["overrides"] == {"modalities": ["text"]}
    assert summary["variants"]["full"]["ua"]["n"] == 2
    meta = json.loads((out / "text_only" / "seed-1" / "model" / "config.json").read_text())
    assert meta["modalities"] == ["text"]
    md = (out / "ablation.md").read_text()
    assert "| FDRL (full) |" in md and "| text only |" in md and "ΔUA vs full" in md
    assert json.loads((out / "ablation.json").read_text())["seeds"] == [0, 1]


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_fit_quick_run(tmp_path, tiny_corpus, features, capsys):
    from train.__main__ import main

    cache, _ = features
    rc = main(["fit", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "cli"), "--cache", str(cache.root),
               "--quick", "--no-progress", "--set", "align_weight=0", "--epochs", "1"])
    assert rc == 0
    cfg = json.loads((tmp_path / "cli" / "model" / "config.json").read_text())
    assert cfg["align_weight"] == 0 and cfg["d_model"] == 64
    meta = json.loads((tmp_path / "cli" / "model" / "meta.json").read_text())
    assert meta["command"].startswith("python -m train fit --corpus")
    assert "test: WA" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["fit", "--corpus", "/no/such/corpus", "--out", "x"], "no such file or folder"),
    (["fit", "--corpus", ".", "--out", "x", "--set", "d_model=abc"], "expected int"),
    (["fit", "--corpus", ".", "--out", "x", "--set", "nonsense=1"], "unknown setting 'nonsense'"),
    (["ablate", "--corpus", ".", "--out", "x", "--variants", "full,bogus"], "unknown ablation variant"),
])
def test_cli_bad_input_gives_one_line_and_nonzero_exit(tmp_path, argv, message, capsys, tiny_corpus):
    from train.__main__ import main

    argv = [str(tiny_corpus) if a == "." else a for a in argv]
    argv = [str(tmp_path / a) if a == "x" else a for a in argv]
    assert main(argv + ["--cache", str(tmp_path / "c"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_cli_evaluate_and_manifest_errors_speak_the_command_line(tmp_path, capsys, tiny_corpus):
    """A model folder no backend opens is the user's input (exit 2, was 'unexpected error', exit 1); an
    unknown label points at --drop-unknown-labels, not at a Python argument."""
    from train.__main__ import main

    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--model", str(tmp_path / "empty"), "--corpus", str(tiny_corpus), "--no-progress",
                 "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "is not a model folder" in err[-1] and "unexpected" not in err[-1]
    manifest = tmp_path / "bored.csv"
    manifest.write_text("path,text,label\nx.wav,hello,bored\n")
    assert main(["fit", "--corpus", str(manifest), "--out", str(tmp_path / "fit"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "label 'bored'" in err[-1] and "--drop-unknown-labels" in err[-1]

    # an --out that cannot be written is refused before the corpus is read (not after hours of training)
    assert main(["fit", "--corpus", str(tmp_path / "missing.csv"), "--out", str(manifest), "--no-progress"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_cli_missing_corpus_in_a_fresh_process(tmp_path):
    out = subprocess.run([sys.executable, "-m", "train", "fit", "--corpus", str(tmp_path / "missing"), "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"train: --corpus {tmp_path / 'missing'}: no such file or folder"]


# ------------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_torchrun_two_processes_on_gloo(tmp_path, tiny_corpus, features):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    cache, _ = features
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "train", "fit", "--corpus",
                          str(tiny_corpus), "--out", str(tmp_path / "ddp"), "--cache", str(cache.root), "--quick",
                          "--no-progress", "--device", "cpu"], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["test"]["n"] == 4 and metrics["epochs_run"] == 2
    meta = json.loads((tmp_path / "ddp" / "model" / "meta.json").read_text())
    assert meta["world_size"] == 2
    assert "1 steps/epoch x 2 epochs on cpu x2" in (tmp_path / "ddp" / "train.log").read_text()  # 8 items / 2 ranks


@pytest.mark.slow
def test_kill_9_mid_training_then_resume(tmp_path, tiny_corpus, features):
    """A real process killed by the crash hook (no cleanup at all) and the same command again."""
    from train.trainer import CRASH_ENV

    cache, _ = features
    cmd = [sys.executable, "-m", "train", "fit", "--corpus", str(tiny_corpus), "--cache", str(cache.root), "--quick",
           "--no-progress", "--epochs", "3", "--batch-size", "4", "--set", "save_every=1"]
    ref = subprocess.run(cmd + ["--out", str(tmp_path / "ref")], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    crashed = subprocess.run(cmd + ["--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600,
                             env={**os.environ, CRASH_ENV: "5:kill"})
    assert crashed.returncode == -9
    again = subprocess.run(cmd + ["--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (a["val"], a["test"], a["best_epoch"]) == (b["val"], b["test"], b["best_epoch"])
    assert (tmp_path / "ref" / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
