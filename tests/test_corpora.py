"""Corpus loaders on a tiny fixture in the real IEMOCAP_full_release layout, and on manifests."""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import pytest

from train.corpora import (
    Utterance,
    apply_transcripts,
    find_iemocap_root,
    format_counts,
    iemocap_speaker,
    load_corpus,
    load_iemocap,
    load_manifest,
    loso_folds,
    main,
    split_counts,
    split_validation,
)

# session -> dialog -> [(utterance suffix, raw label, gold text)]
FIXTURE = {
    "Session1": {
        "Ses01F_impro01": [("F000", "neu", "Excuse me."), ("M000", "exc", "Wow, great!"),
                           ("F001", "fru", "This is annoying."), ("M001", "xxx", "Hmm."),
                           ("F002", "hap", "Nice.")],
        "Ses01F_script01_1": [("F000", "ang", "Get out!"), ("M000", "sad", "I miss her."),
                              ("M001", "sur", "Really?")],
    },
    "Session2": {
        "Ses02M_impro02": [("F000", "neu", "Okay."), ("M000", "ang", "No way!"), ("M001", "exc", "Yes!"),
                           ("F001", "sad", "I lost it.")],
        "Ses02M_script01_1": [("M000", "hap", "Good day."), ("F000", "oth", "Whatever.")],
    },
    "Session3": {
        "Ses03F_impro01": [("F000", "sad", "It's over."), ("M000", "hap", "Lovely."),
                           ("F001", "neu", "Fine.")],
    },
}
MISSING_WAV = "Ses02M_impro02_M001"  # labelled (exc) but its wav is absent


def _silent_wav(path: Path, seconds: float = 0.05) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * int(16000 * seconds))


def build_iemocap(root: Path) -> Path:
    for session, dialogs in FIXTURE.items():
        sdir = root / session
        evald, transd = sdir / "dialog" / "EmoEvaluation", sdir / "dialog" / "transcriptions"
        (evald / "Categorical").mkdir(parents=True)  # the real tree has subfolders next to the files
        transd.mkdir(parents=True)
        for dialog, utts in dialogs.items():
            ev = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            tr = []
            for i, (suffix, raw, text) in enumerate(utts):
                uid, t0, t1 = f"{dialog}_{suffix}", 1.5 + 3 * i, 3.25 + 3 * i
                ev += [f"[{t0:.4f} - {t1:.4f}]\t{uid}\t{raw}\t[2.5000, 3.0000, 2.5000]",
                       "C-E1:\tNeutral state;\t()", "C-E2:\tFrustration; Anger;\t(annoyed)",
                       "A-E1:\tval 3; act 2; dom  2;\t()", ""]
                tr.append(f"{uid} [{t0:07.4f}-{t1:07.4f}]: {text}")
                if uid != MISSING_WAV:
                    _silent_wav(sdir / "sentences" / "wav" / dialog / f"{uid}.wav")
            tr += [f"{dialog}_MXX0 [000.1000-000.9000]: [LAUGHTER]", "M: [BREATHING]"]  # no label for these
            (evald / f"{dialog}.txt").write_text("\n".join(ev) + "\n")
            (evald / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
            (transd / f"{dialog}.txt").write_text("\r\n".join(tr) + "\r\n")
    return root


@pytest.fixture
def iemocap(tmp_path):
    return build_iemocap(tmp_path / "IEMOCAP_full_release")


def _load(root, **kw):
    with pytest.warns(UserWarning, match="1 labelled utterances have no wav"):
        return load_iemocap(root, **kw)


def test_four_class_merges_excited_and_drops_the_rest(iemocap):
    utts = _load(iemocap)
    counts = {lab: sum(u.label == lab for u in utts) for lab in ("neutral", "happy", "angry", "sad")}
    # hap 3 + exc 2 (one exc has no wav) ; fru/xxx/sur/oth dropped
    assert counts == {"neutral": 3, "happy": 4, "angry": 2, "sad": 3}
    assert len(utts) == 12
    assert {u.meta["raw_label"] for u in utts} == {"neu", "hap", "exc", "ang", "sad"}
    assert all(u.label == "happy" for u in utts if u.meta["raw_label"] == "exc")
    assert split_counts(utts)["Session1"] == {"neutral": 1, "happy": 2, "angry": 1, "sad": 1}


def test_text_speaker_session_and_meta(iemocap):
    by_id = {u.id: u for u in _load(iemocap)}
    u = by_id["Ses01F_impro01_M000"]
    assert (u.text, u.speaker, u.session, u.label) == ("Wow, great!", "Ses01M", "Session1", "happy")
    assert Path(u.path).is_absolute() and Path(u.path).is_file()
    assert u.path.endswith("Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M000.wav")
    assert u.meta["improvised"] is True and u.meta["dialog"] == "Ses01F_impro01"
    assert u.meta["votes"] == {"E1": ["Neutral state"], "E2": ["Frustration", "Anger"]}
    assert u.meta["vad"] == [2.5, 3.0, 2.5]
    s = by_id["Ses01F_script01_1_F000"]
    assert s.meta["improvised"] is False and s.text == "Get out!" and s.speaker == "Ses01F"
    assert by_id["Ses02M_impro02_F001"].speaker == "Ses02F"
    assert MISSING_WAV not in by_id
    assert iemocap_speaker("Ses05M_script02_2_F014") == "Ses05F"


def test_options_improvised_sessions_six_class_and_dict(iemocap):
    impro = _load(iemocap, improvised_only=True)
    assert impro and all(u.meta["improvised"] for u in impro)
    only3 = load_iemocap(iemocap, sessions=[3])
    assert {u.session for u in only3} == {"Session3"}
    six = _load(iemocap, labels="6class")
    assert {u.label for u in six} == {"neutral", "happy", "angry", "sad", "excited", "frustrated"}
    custom = load_iemocap(iemocap, labels={"ang": "negative", "sad": "negative", "hap": "positive"})
    assert sorted(u.label for u in custom) == ["negative"] * 5 + ["positive"] * 3
    kept = _load(iemocap, require_audio=False)
    assert MISSING_WAV in {u.id for u in kept}


def test_not_an_iemocap_tree(tmp_path):
    (tmp_path / "Session1").mkdir()
    with pytest.raises(ValueError, match="expected Session1..Session5") as e:
        load_iemocap(tmp_path)
    assert "\n" not in str(e.value)
    assert find_iemocap_root(tmp_path) is None


def test_loso_folds_are_speaker_independent_and_validation_stays_in_train(iemocap):
    utts = _load(iemocap)
    folds = list(loso_folds(utts))
    assert [f[0] for f in folds] == ["Session1", "Session2", "Session3"]
    for name, train, test in folds:
        assert {u.session for u in test} == {name} and name not in {u.session for u in train}
        assert not {u.speaker for u in train} & {u.speaker for u in test}
        assert len(train) + len(test) == len(utts)
        for kw in ({"mode": "speaker"}, {"mode": "fraction", "fraction": 0.5}):
            tr, va = split_validation(train, key=name, **kw)
            assert va and tr and not {u.id for u in va} & {u.id for u in test}
            assert {u.id for u in tr} | {u.id for u in va} == {u.id for u in train}
            assert not {u.id for u in tr} & {u.id for u in va}
            assert split_validation(train, key=name, **kw) == (tr, va)  # deterministic
        tr, va = split_validation(train, key=name)
        assert len({u.speaker for u in va}) == 1 and not {u.speaker for u in tr} & {u.speaker for u in va}
    tr, va = split_validation(folds[0][1], speaker="Ses02F")
    assert {u.speaker for u in va} == {"Ses02F"}
    with pytest.raises(ValueError, match="not among the training speakers"):
        split_validation(folds[0][1], speaker="Ses01F")


def test_transcript_substitution(iemocap, tmp_path):
    utts = _load(iemocap)
    asr = {u.id: u.text.lower() + " uh" for u in utts}
    path = tmp_path / "asr.jsonl"
    path.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in asr.items()))
    for src in (asr, path, str(path)):
        with pytest.warns(UserWarning):
            swapped = load_iemocap(iemocap, transcripts=src)
        u = next(u for u in swapped if u.id == "Ses01F_impro01_F000")
        assert u.text == "excuse me. uh" and u.meta["gold_text"] == "Excuse me."
    partial = dict(list(asr.items())[:5])
    with pytest.raises(ValueError, match="7 of 12 utterances have no ASR transcript"):
        apply_transcripts(utts, partial)
    with pytest.warns(UserWarning, match="dropped"):
        assert len(apply_transcripts(utts, partial, on_missing="drop")) == 5
    with pytest.warns(UserWarning, match="kept gold"):
        assert len(apply_transcripts(utts, partial, on_missing="gold")) == 12


def _synthetic_manifest(root: Path) -> Path:
    rows = []
    pairs = [("happy", "train"), ("sad", "train"), ("angry", "test"), ("neutral", "val")]
    for i, (label, split) in enumerate(pairs):
        rel = f"wav/syn_{i:03d}.wav"
        _silent_wav(root / rel)
        rows.append({"id": f"syn_{i:03d}", "path": rel, "text": f"sentence {i}", "label": label,
                     "speaker": f"espeak_en+f{i % 2}", "engine": "espeak-ng", "sentence_id": i,
                     "carrier": "both", "split": split, "augmented": i == 3, "duration": 0.05})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_manifest_jsonl_synthetic_rows(tmp_path):
    path = _synthetic_manifest(tmp_path / "syn")
    utts = load_manifest(path, labels="4class")
    assert len(utts) == 4 and utts[0].path == str(tmp_path / "syn" / "wav" / "syn_000.wav")
    u = utts[3]
    assert (u.id, u.label, u.split, u.speaker) == ("syn_003", "neutral", "val", "espeak_en+f1")
    assert u.session is None
    assert u.meta["augmented"] is True and u.meta["sentence_id"] == 3 and u.meta["engine"] == "espeak-ng"
    assert split_counts(utts) == {"test": {"angry": 1}, "train": {"happy": 1, "sad": 1},
                                  "val": {"neutral": 1}}
    assert [x.id for x in load_corpus(tmp_path / "syn")] == [x.id for x in utts]  # folder with manifest.jsonl
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        kept = load_corpus({"path": str(path), "labels": ["happy", "sad"], "unknown_labels": "drop"})
    assert [u.label for u in kept] == ["happy", "sad"]


def test_manifest_csv_relative_paths_labels_and_errors(tmp_path):
    _silent_wav(tmp_path / "audio" / "a.wav")
    _silent_wav(tmp_path / "audio" / "b.wav")
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "label", "speaker", "session", "gender"])
        w.writerow(["audio/a.wav", "hello, there", "happy", "s1", "1", "f"])
        w.writerow(["audio/b.wav", "", "bored", "s2", "2", "m"])
        w.writerow(["audio/c.wav", "gone", "sad", "s2", "2", "m"])
    with pytest.raises(ValueError, match=r"data.csv line 3: label 'bored' is not in the label set"):
        load_manifest(path, labels=["happy", "sad"])
    with pytest.warns(UserWarning) as rec:
        utts = load_corpus(path, labels=["happy", "sad"], unknown_labels="drop")
    msgs = " | ".join(str(r.message) for r in rec)
    assert "dropped 1 rows" in msgs and "1 audio files are missing" in msgs
    assert [(u.id, u.text, u.session, u.meta["gender"]) for u in utts] == [
        ("audio/a", "hello, there", "1", "f")]
    assert Path(utts[0].path) == tmp_path / "audio" / "a.wav"
    with pytest.warns(UserWarning, match="kept"):
        assert [u.label for u in load_manifest(path, require_audio=False)] == ["happy", "bored", "sad"]

    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\naudio/a.wav,hi\n")
    with pytest.raises(ValueError, match=r"bad.csv line 1: missing required column 'label'"):
        load_manifest(bad)
    badj = tmp_path / "bad.jsonl"
    badj.write_text(json.dumps({"path": "audio/a.wav", "text": "x", "label": "happy"}) + "\n\n"
                    + json.dumps({"path": "audio/b.wav", "text": "y"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl line 3: missing required column 'label'"):
        load_manifest(badj)
    with pytest.raises(ValueError, match="not a corpus"):
        load_corpus(tmp_path / "nothing.txt")


def test_format_counts_and_cli(iemocap, capsys, tmp_path):
    utts = [Utterance(id=str(i), path="/x.wav", text="", label=lab, speaker="s", session=f"Session{s}")
            for i, (lab, s) in enumerate([("sad", 1), ("happy", 1), ("happy", 2)])]
    table = format_counts(utts, classes=["happy", "sad"]).splitlines()
    assert table[0].split() == ["session", "happy", "sad", "total"]
    assert table[-1].split() == ["total", "2", "1", "3"]
    assert main([str(iemocap.parent)]) == 0  # the folder above IEMOCAP_full_release also works
    out = capsys.readouterr()
    assert "Session1" in out.out and "DIFFERS from the standard" in out.out and "exc 1" in out.out
    assert "warning:" in out.err and MISSING_WAV in out.err
    assert main([str(tmp_path / "nope")]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_reports_a_matching_copy_and_runs_as_module(iemocap, capsys, monkeypatch):
    import subprocess
    import sys

    import train.corpora as corpora

    monkeypatch.setattr(corpora, "IEMOCAP4_EXPECTED", {"neutral": 3, "happy": 4, "angry": 2, "sad": 3})
    assert main([str(iemocap), "--by", "speaker"]) == 0
    out = capsys.readouterr().out
    assert "matches the standard" in out and "Ses01M" in out.splitlines()[2]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "train.corpora", str(iemocap), "--labels", "6class"],
                          cwd=root, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "frustrated" in proc.stdout.splitlines()[0] and "DIFFERS" not in proc.stdout


def test_loso_and_label_set_errors():
    utts = [Utterance(id=str(i), path="/x.wav", text="", label="sad", speaker=spk, session=ses)
            for i, (spk, ses) in enumerate([("a", "1"), ("a", "2"), ("b", "2")])]
    with pytest.warns(UserWarning, match="not speaker-independent"):
        list(loso_folds(utts))
    with pytest.raises(ValueError, match="at least 2 sessions"):
        list(loso_folds(utts[:1]))
    with pytest.raises(ValueError, match="unknown label set 'seven'"):
        load_manifest(__file__, labels="seven")


def test_label_without_transcription_line_keeps_empty_text(iemocap):
    trans = iemocap / "Session3" / "dialog" / "transcriptions" / "Ses03F_impro01.txt"
    trans.write_text("".join(line + "\n" for line in trans.read_text().splitlines() if "_M000" not in line))
    with pytest.warns(UserWarning, match="1 utterances have no transcription line"):
        utts = load_iemocap(iemocap, sessions=["Session3"])
    assert {u.id: u.text for u in utts}["Ses03F_impro01_M000"] == ""
