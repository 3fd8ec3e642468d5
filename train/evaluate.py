"""`python -m train evaluate --model M --corpus C`: a model on any labelled corpus through the RUN-TIME path.

Training metrics come from cached features and gold transcripts; a user hears the model through Whisper's
own transcript (after the hallucination guard), the encoder frames of that same pass (with the model's
window policy) and the backend the run-time picks. This command runs exactly that per utterance and
reports, for three views:

- full: ASR text (when the guard accepts it) + speech, what `stream.run` publishes;
- speech only: the same frames, no text;
- text only: the ASR text, no speech (an utterance whose transcript was dropped has nothing to go on);

WA, UA, macro-F1, per-class recall, confusion matrices (PNG), accuracy per speaker (and per engine /
carrier when the manifest has them), calibration (ECE, reliability diagram) and the `uncertain` outcome
(fdrl_core.uncertainty, as at run time): how often, and how accurate the confident rest is.

Dependency note: this is the one module outside `stream` that imports it (lazily, inside `evaluate`).
Measuring the run-time path means running the run-time's recogniser, guard and backends; the DESIGN rule
"nothing imports stream" exists to stop train/serve skew, and a copy of these pieces would be exactly that
skew. Moving Recognizer/judge and the backends into fdrl_core is the clean fix once this round's
parallel changes to those files (streaming ASR, GPU backends) have landed; `stream` still never imports
`train`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fdrl_core.audio import load_audio
from fdrl_core.calibration import reliability
from fdrl_core.uncertainty import UncertaintyConfig, decide
from train.corpora import Utterance
from train.metrics import classification_metrics

log = logging.getLogger("train")

VIEWS = ("full", "speech_only", "text_only")


@dataclass
class EvalOptions:
    backend: str = "auto"  # as stream.run --backend
    device: str = "cpu"
    split: str | None = None  # evaluate only this split of the manifest (None: every utterance)
    limit: int = 0  # first N utterances only (0: all)
    min_confidence: float = UncertaintyConfig().min_confidence
    progress: bool = True


def _select(utts: Sequence[Utterance], opts: EvalOptions) -> list[Utterance]:
    chosen = [u for u in utts if opts.split is None or u.split == opts.split]
    # augmented copies are training material, not evaluation items
    chosen = [u for u in chosen if not u.meta.get("augmented")]
    if opts.limit:
        chosen = chosen[: opts.limit]
    if not chosen:
        raise ValueError(f"no utterances to evaluate (split {opts.split!r})" if opts.split else
                         "no utterances to evaluate")
    return chosen


def evaluate(model: str | Path, utts: Sequence[Utterance], out: str | Path, opts: EvalOptions | None = None
             ) -> dict:
    """Run the run-time path over `utts`, write report.json, report.md, predictions.jsonl and figures to `out`."""
    from fdrl_core.speech_frontend import window_for_model
    from stream.asr import AsrConfig, Recognizer
    from stream.emotion import EmotionConfig, EmotionStage

    opts = opts or EvalOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    utts = _select(utts, opts)
    stage = EmotionStage(EmotionConfig(backend=opts.backend, model=str(model), device=opts.device,
                                       uncertainty=UncertaintyConfig(min_confidence=opts.min_confidence)))
    classes = list(stage.backend.labels)
    unknown = sorted({u.label for u in utts} - set(classes))
    if unknown:
        raise ValueError(f"the corpus has labels the model does not know: {unknown} (model labels: {classes})")
    window = window_for_model(stage.model_path)
    recognizer = Recognizer(AsrConfig(device=opts.device), window=window)
    ucfg = stage.cfg.uncertainty
    # speech_norm="speaker" models: one running-statistics state per speaker, fed in manifest order, as one
    # run-time stream per speaker would be (no speaker column: the whole corpus is one stream)
    streams: dict[str, object] = {}
    speaker_norm = None
    if stage.speaker_state() is not None:
        named = any(u.speaker and u.speaker != "unknown" for u in utts)
        speaker_norm = (f"running per-speaker statistics in manifest order ({len({u.speaker for u in utts})} "
                        "speakers)" if named else "no speaker column: running statistics over the whole corpus "
                        "as one stream")
    rows = []
    t0 = time.perf_counter()
    for u in tqdm(utts, desc="evaluate", unit="utt", disable=not opts.progress):
        audio = load_audio(u.path)
        hyp = recognizer.transcribe(audio, final=True)
        text = hyp.usable_text
        state = streams.setdefault(u.speaker, stage.speaker_state()) if speaker_norm else None
        frames = stage.prepare(hyp.frames, state)
        if state is not None:
            state.commit(hyp.frames)
        full = stage.backend.predict(frames, text)
        speech = stage.backend.predict(frames, None)
        text_only = stage.backend.predict(np.zeros((0, hyp.frames.shape[-1]), np.float32), text) if text else None
        verdict = decide(full.confidence, audio, hyp.no_speech_prob, ucfg)
        rows.append({
            "id": u.id, "label": u.label, "speaker": u.speaker, "engine": u.meta.get("engine"),
            "carrier": u.meta.get("carrier"), "gold_text": u.text, "asr_text": hyp.text, "text_used": text is not None,
            "text_dropped": hyp.reason, "no_speech_prob": round(hyp.no_speech_prob, 4),
            "full": {"pred": full.label, "probs": full.probs, "confidence": full.confidence},
            "speech_only": {"pred": speech.label, "probs": speech.probs, "confidence": speech.confidence},
            "text_only": ({"pred": text_only.label, "probs": text_only.probs, "confidence": text_only.confidence}
                          if text_only else None),
            "uncertain": verdict.uncertain, "uncertain_reason": verdict.reason,
        })
    seconds = time.perf_counter() - t0
    report = summarize(rows, classes, model=str(model), backend=stage.name, window=window.describe(),
                       seconds=seconds, min_confidence=ucfg.min_confidence,
                       speaker_norm=speaker_norm or getattr(stage.backend, "speech_norm", "none"))
    _write(out, rows, report, classes)
    return report


def _view_metrics(rows: list[dict], view: str, classes: list[str]) -> dict | None:
    have = [r for r in rows if r[view] is not None]
    if not have:
        return None
    y = [classes.index(r["label"]) for r in have]
    p = [classes.index(r[view]["pred"]) for r in have]
    m = classification_metrics(y, p, classes)
    probs = np.array([[r[view]["probs"][c] for c in classes] for r in have])
    m["ece"] = reliability(probs, np.array(y)).ece
    m["coverage"] = len(have) / len(rows)
    return m


def _accuracy_by(rows: list[dict], key: str) -> dict:
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        if r.get(key) is not None:
            groups[str(r[key])].append(r["full"]["pred"] == r["label"])
    return {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(groups.items())}


def summarize(rows: list[dict], classes: list[str], **info) -> dict:
    views = {v: _view_metrics(rows, v, classes) for v in VIEWS}
    confident = [r for r in rows if not r["uncertain"]]
    reasons = Counter((r["uncertain_reason"] or "").split(" (")[0] for r in rows if r["uncertain"])
    y = np.array([classes.index(r["label"]) for r in rows])
    probs = np.array([[r["full"]["probs"][c] for c in classes] for r in rows])
    return {
        **info, "n": len(rows), "classes": classes, "views": views,
        "calibration": reliability(probs, y).to_dict(),
        "uncertain": {"n": len(rows) - len(confident), "rate": 1 - len(confident) / len(rows),
                      "reasons": dict(reasons),
                      "accuracy_of_confident": (sum(r["full"]["pred"] == r["label"] for r in confident)
                                                / len(confident)) if confident else None},
        "text_used_rate": sum(r["text_used"] for r in rows) / len(rows),
        "by_speaker": _accuracy_by(rows, "speaker"),
        "by_engine": _accuracy_by(rows, "engine"),
        "by_carrier": _accuracy_by(rows, "carrier"),
    }


def markdown(report: dict) -> str:
    classes = report["classes"]
    lines = [f"# Evaluation: {report['model']}", "",
             f"{report['n']} utterances through the run-time path (Whisper transcript + hallucination guard, "
             f"shared encoder frames, window {report['window']}, backend {report['backend']}); "
             f"{report['seconds']:.0f} s. Transcript used for {100 * report['text_used_rate']:.1f} %."
             + (f" Speaker normalisation: {report['speaker_norm']}." if report.get("speaker_norm", "none")
                not in ("none", "utterance", "utterance_std") else ""), "",
             "| view | n | WA | UA | macro-F1 | ECE | " + " | ".join(f"recall {c}" for c in classes) + " |",
             "|---|---:|---:|---:|---:|---:|" + "---:|" * len(classes)]
    names = {"full": "speech + ASR text", "speech_only": "speech only", "text_only": "ASR text only"}
    for v in VIEWS:
        m = report["views"][v]
        if m is None:
            continue
        rec = " | ".join("-" if m["per_class_recall"][c] is None else f"{100 * m['per_class_recall'][c]:.1f}"
                         for c in classes)
        lines.append(f"| {names[v]} | {m['n']} | {100 * m['wa']:.1f} | {100 * m['ua']:.1f} | "
                     f"{100 * m['macro_f1']:.1f} | {m['ece']:.3f} | {rec} |")
    un = report["uncertain"]
    acc = un["accuracy_of_confident"]
    lines += ["", f"Uncertain outcomes: {un['n']} of {report['n']} ({100 * un['rate']:.1f} %; "
                  f"reasons: {', '.join(f'{k} {v}' for k, v in un['reasons'].items()) or 'none'}); "
                  f"accuracy of the confident rest: {'-' if acc is None else f'{100 * acc:.1f} %'}.",
              f"Calibration (full view): ECE {report['calibration']['ece']:.3f} "
              "(reliability diagram: reliability.png).", ""]
    for key, title in (("by_engine", "engine"), ("by_carrier", "carrier"), ("by_speaker", "speaker")):
        groups = report[key]
        if not groups:
            continue
        lines += [f"| {title} | n | accuracy % |", "|---|---:|---:|"]
        lines += [f"| {k} | {g['n']} | {100 * g['accuracy']:.1f} |" for k, g in groups.items()]
        lines.append("")
    return "\n".join(lines)


def _write(out: Path, rows: list[dict], report: dict, classes: list[str]) -> None:
    from train.plots import plot_confusion, plot_reliability

    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    for v in VIEWS:
        m = report["views"][v]
        if m is not None:
            plot_confusion(m["confusion"], classes, out / f"confusion_{v}.png",
                           title=f"{v}: WA {m['wa']:.3f}  UA {m['ua']:.3f}")
    y = np.array([classes.index(r["label"]) for r in rows])
    probs = np.array([[r["full"]["probs"][c] for c in classes] for r in rows])
    plot_reliability(reliability(probs, y), out / "reliability.png", title="full view")
