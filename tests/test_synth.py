"""Synthetic corpus generator (train.synth): format, determinism, splits, carriers, prosody, errors."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from train.synth import ALL_VOICES, CARRIERS, LABELS, SynthConfig, SynthError, generate_corpus, synthesize
from train.synth.corpus import plan_jobs
from train.synth.sentences import sentence_bank, sentence_id
from train.synth.voices import is_installed

REPO = Path(__file__).resolve().parents[1]
SENTENCE = "The report has seven pages and three tables in the appendix."


def _installed_engines() -> tuple[str, ...]:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed (apt-get install espeak-ng sox; scripts/setup.sh)")
    fest = [v for v in ALL_VOICES if v.engine == "festival"]
    if shutil.which("festival") and all(is_installed(v) for v in fest):
        return ("espeak-ng", "festival")
    return ("espeak-ng",)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "corpus.json"}


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    engines = _installed_engines()
    out = tmp_path_factory.mktemp("synth") / "tiny"
    manifest = generate_corpus(SynthConfig.tiny(out, engines=engines, progress=False))
    return manifest, _rows(manifest), engines


def test_tiny_corpus_is_deterministic(tiny, tmp_path):
    manifest, _, engines = tiny
    # one worker instead of two: scheduling must not matter either
    again = generate_corpus(SynthConfig.tiny(tmp_path / "again", engines=engines, progress=False, workers=1))
    assert again.read_bytes() == manifest.read_bytes()
    assert _tree_digest(again.parent) == _tree_digest(manifest.parent)
    other = plan_jobs(SynthConfig.tiny(tmp_path, engines=engines, seed=1).validate(),
                      [v for v in ALL_VOICES if v.engine in engines])[0]
    first = plan_jobs(SynthConfig.tiny(tmp_path, engines=engines).validate(),
                      [v for v in ALL_VOICES if v.engine in engines])[0]
    assert [(j.voice.id, j.sentence.sentence_id) for j in other] != \
        [(j.voice.id, j.sentence.sentence_id) for j in first]


def test_manifest_rows_and_wav_format(tiny):
    import soundfile as sf

    manifest, rows, _ = tiny
    keys = {"id", "path", "text", "label", "speaker", "engine", "sentence_id", "carrier", "split",
            "augmented", "duration"}
    assert 40 <= len(rows) <= 100
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert keys <= set(r), r
        info = sf.info(str(manifest.parent / r["path"]))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        x, _ = sf.read(str(manifest.parent / r["path"]), dtype="int16")
        assert abs(len(x) / 16000 - r["duration"]) < 0.002
        assert 0.5 < r["duration"] < 12
        assert np.abs(x).max() > 2000 and np.sqrt(np.mean(x.astype(float) ** 2)) > 100, r["id"]
        assert r["augmented"] == (r["aug"] is not None)
    corpus = json.loads((manifest.parent / "corpus.json").read_text())
    assert corpus["seed"] == 0 and corpus["counts"]["utterances"] == len(rows)
    assert set(corpus["counts"]["by_split"]) == {"train", "val", "test"}


def test_splits_are_disjoint_by_voice_and_sentence(tiny):
    _, rows, engines = tiny
    by = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    assert all(by.values())
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not {r["speaker"] for r in by[a]} & {r["speaker"] for r in by[b]}
        assert not {r["sentence_id"] for r in by[a]} & {r["sentence_id"] for r in by[b]}
    # augmentation: training only, same split as the source
    assert all(r["split"] == "train" for r in rows if r["augmented"])
    src = {r["id"]: r for r in rows if not r["augmented"]}
    assert all(src[r["source_id"]]["split"] == "train" for r in rows if r["augmented"])
    assert len({r["speaker"] for r in rows}) >= (8 if len(engines) == 2 else 6)
    assert {r["engine"] for r in rows} == set(engines)


def test_labels_and_carriers(tiny):
    _, rows, _ = tiny
    assert {r["label"] for r in rows} == set(LABELS)
    assert {r["carrier"] for r in rows} == set(CARRIERS)
    for r in rows:
        wording = r["sentence_id"].split("-")[0]
        if r["carrier"] == "speech" or r["label"] == "neutral":
            assert wording == "neutral" and r["voice_emotion"] == r["label"]
        if r["carrier"] == "text":
            assert wording == r["label"] and r["voice_emotion"] == "neutral"
        if r["carrier"] == "both":
            assert wording == r["label"] == r["voice_emotion"]


def _active_rms(x: np.ndarray) -> float:
    f = x[: len(x) // 320 * 320].astype(float).reshape(-1, 320)
    e = (f**2).mean(axis=1)
    return float(np.sqrt(e[e > e.max() * 10 ** -3.5].mean()))


@pytest.mark.parametrize("voice", ["espeak:en+m3", "festival:kal_diphone"])
def test_prosody_differs_per_emotion(voice):
    engines = _installed_engines()
    if voice.startswith("festival") and "festival" not in engines:
        pytest.skip("festival or its voices are not installed (apt-get install festival festvox-kallpc16k)")
    out = {}
    for emo in ("angry", "sad", "neutral"):
        xs = [synthesize(SENTENCE, emo, voice, rng=seed) for seed in (0, 1)]
        assert all(x.dtype == np.int16 for x in xs)
        out[emo] = (np.mean([len(x) / 16000 for x in xs]), np.mean([_active_rms(x) for x in xs]))
    (d_ang, r_ang), (d_sad, r_sad), (d_neu, r_neu) = out["angry"], out["sad"], out["neutral"]
    assert d_sad > d_neu > d_ang, out
    assert r_ang > r_neu > r_sad, out
    # same seed, same audio
    a, b = (synthesize(SENTENCE, "happy", voice, rng=3) for _ in range(2))
    assert np.array_equal(a, b)


def test_corpus_prosody_trends(tiny):
    import soundfile as sf

    manifest, rows, _ = tiny
    rms = {}
    for emo in ("angry", "sad"):
        xs = [sf.read(str(manifest.parent / r["path"]), dtype="int16")[0] for r in rows
              if r["voice_emotion"] == emo and not r["augmented"]]
        rms[emo] = np.mean([_active_rms(x) for x in xs])
    assert rms["angry"] > 1.5 * rms["sad"], rms


def test_sentence_bank_is_stable_and_large():
    small, big = sentence_bank(12), sentence_bank(150)
    for w in small:
        assert [s.sentence_id for s in small[w]] == [s.sentence_id for s in big[w][:12]]
        assert len({s.text for s in big[w]}) == 150
        assert all(s.sentence_id == sentence_id(s.text, w) for s in big[w])
        assert all("!" not in s.text for s in big[w])


def test_test_engine_split_is_cross_synthesizer(tmp_path):
    cfg = SynthConfig(out=tmp_path, n_sentences=20, n_utterances=60, test_engine="festival").validate()
    jobs, info = plan_jobs(cfg, list(ALL_VOICES))
    engines = {s: {j.voice.engine for j in jobs if j.split == s} for s in ("train", "val", "test")}
    assert engines == {"train": {"espeak-ng"}, "val": {"espeak-ng"}, "test": {"festival"}}
    assert set(info["voices"]["test"]) == {v.id for v in ALL_VOICES if v.engine == "festival"}
    with pytest.raises(SynthError, match="test-engine"):
        SynthConfig(out=tmp_path, engines=("espeak-ng",), test_engine="festival").validate()


def test_flite_is_an_opt_in_third_synthesizer(tmp_path):
    if shutil.which("flite") is None or shutil.which("sox") is None:
        pytest.skip("flite and sox are needed (apt-get install flite sox; scripts/setup.sh)")
    assert SynthConfig(out=tmp_path).engines == ("espeak-ng", "festival"), "the default corpus is unchanged"
    manifest = generate_corpus(SynthConfig.tiny(tmp_path / "fl", engines=("flite",), augment=0, progress=False))
    rows = _rows(manifest)
    assert {r["engine"] for r in rows} == {"flite"} and {r["speaker"] for r in rows} <= {
        v.id for v in ALL_VOICES if v.engine == "flite"}
    out = {}
    for emo in ("angry", "sad"):
        x = synthesize(SENTENCE, emo, "flite:rms", rng=0)
        out[emo] = (len(x) / 16000, _active_rms(x))
    assert out["sad"][0] > out["angry"][0] and out["angry"][1] > out["sad"][1], out


def test_missing_engine_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng, festival or sox on PATH
    with pytest.raises(SynthError, match=r"apt-get install espeak-ng"):
        generate_corpus(SynthConfig.tiny(tmp_path / "c", engines=("espeak-ng",), progress=False))
    res = subprocess.run([sys.executable, "-m", "train.synth", "--out", str(tmp_path / "d"), "--tiny",
                          "--engines", "festival"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PATH": str(tmp_path)})
    assert res.returncode != 0
    assert "apt-get install festival" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_cli_help_and_bad_options(tmp_path):
    res = subprocess.run([sys.executable, "-m", "train.synth", "--help"], cwd=REPO, capture_output=True,
                         text=True)
    assert res.returncode == 0 and "--test-engine" in res.stdout and "--tiny" in res.stdout
    res = subprocess.run([sys.executable, "-m", "train.synth", "--out", str(tmp_path), "--engines", "mbrola"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown engine" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.startswith("train.synth: error:") and len(res.stderr.strip().splitlines()) == 1
