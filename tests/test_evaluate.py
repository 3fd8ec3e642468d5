"""`python -m train evaluate`: a labelled manifest through the run-time path, reports and figures out,
one-line errors for bad input."""

import json
import subprocess
import sys

import pytest

from tests.test_stream_support import REPO, clean_env, have_espeak, make_checkpoint

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")


def _evaluate(*args):
    return subprocess.run([sys.executable, "-m", "train", "evaluate", *args], cwd=REPO, env=clean_env(),
                          capture_output=True, text=True, timeout=600)


def test_evaluate_reports_every_view_and_calibration(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    rows = [("I am so happy to see you again today.", "happy", "a"), ("The report has seven pages.", "neutral", "b"),
            ("Leave me alone, I am sick of this.", "angry", "a")]
    lines = ["path,text,label,speaker"]
    for i, (text, label, speaker) in enumerate(rows):
        wav = tmp_path / f"u{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        lines.append(f"{wav},{text.replace(',', '')},{label},{speaker}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    res = _evaluate("--model", str(ckpt), "--corpus", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"),
                    "--no-progress")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["n"] == 3 and set(report["views"]) == {"full", "speech_only", "text_only"}
    full = report["views"]["full"]
    assert {"wa", "ua", "macro_f1", "per_class_recall", "confusion", "ece"} <= set(full)
    assert set(report["by_speaker"]) == {"a", "b"} and 0 <= report["calibration"]["ece"] <= 1
    assert report["text_used_rate"] > 0  # Whisper understood espeak-ng and the guard let the text through
    preds = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and all(p["asr_text"] for p in preds) and all("uncertain" in p for p in preds)
    for name in ("confusion_full.png", "confusion_speech_only.png", "reliability.png", "report.md"):
        assert (tmp_path / "out" / name).stat().st_size > 500, name


def test_evaluate_bad_input_is_one_line(tmp_path):
    res = _evaluate("--model", str(tmp_path / "nope"), "--corpus", str(tmp_path / "m.csv"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "nope" in res.stderr.strip().splitlines()[-1]
