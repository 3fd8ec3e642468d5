"""Experiments made of runs: one run, or LOSO folds with a summary (mean +- std and pooled predictions)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from fdrl_core.config import FDRLConfig
from train.corpora import Utterance
from train.loop import RunContext, train_run
from train.metrics import classification_metrics, format_pm, mean_std
from train.settings import TrainConfig
from train.splits import corpus_splits, fold_splits
from train.state import write_json

log = logging.getLogger("train")


def run_experiment(utts: Sequence[Utterance], out: str | Path, cfg: FDRLConfig, tcfg: TrainConfig,
                   ctx: RunContext, folds: str = "none", name: str | None = None) -> dict:
    """One run in `out` (folds="none") or one run per LOSO fold in out/fold-<session> plus a summary."""
    out = Path(out)
    name = name or out.name
    if folds == "none":
        return train_run(corpus_splits(utts, tcfg), out, cfg, tcfg, ctx, name=name)
    if folds != "loso":
        raise ValueError(f"folds must be 'none' or 'loso', not {folds!r}")
    results = {}
    for session, splits in fold_splits(utts, tcfg):
        results[session] = train_run(splits, out / f"fold-{session}", cfg, tcfg, ctx, name=f"{name} fold {session}")
    summary = summarize_folds(results, out, list(cfg.labels.classes))
    if ctx.dist.main:
        write_json(out / "summary.json", summary)
        (out / "summary.md").write_text(summary_markdown(summary))
        log.info("LOSO over %d folds: WA %s  UA %s  F1 %s | pooled WA %.2f UA %.2f", len(results),
                 format_pm(summary["mean"]["wa"]), format_pm(summary["mean"]["ua"]),
                 format_pm(summary["mean"]["macro_f1"]), 100 * summary["pooled"]["wa"], 100 * summary["pooled"]["ua"])
    return summary


def _read_predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarize_folds(results: dict[str, dict], out: Path, classes: list[str]) -> dict:
    """Mean ± std over folds and the metrics of all test predictions pooled (papers report either)."""
    y, p = [], []
    for session in results:
        for row in _read_predictions(out / f"fold-{session}" / "predictions_test.jsonl"):
            y.append(classes.index(row["label"]))
            p.append(classes.index(row["pred"]))
    pooled = classification_metrics(y, p, classes)
    per_fold = {s: {k: r["test"][k] for k in ("wa", "ua", "macro_f1", "n")} | {"best_epoch": r["best_epoch"]}
                for s, r in results.items()}
    oracle = [r["test_oracle"] for r in results.values() if r.get("test_oracle")]
    return {"protocol": "leave-one-session-out", "classes": classes, "folds": per_fold,
            "mean": {k: mean_std([f[k] for f in per_fold.values()]) for k in ("wa", "ua", "macro_f1")},
            "pooled": pooled,
            "test_oracle_mean": {k: mean_std([o[k] for o in oracle]) for k in ("wa", "ua")} | {
                "note": "best epoch chosen ON TEST per fold: the optimistic bound many papers report"}}


def summary_markdown(summary: dict) -> str:
    lines = ["# Leave-one-session-out results", "",
             "Model selection on a validation split carved from the training sessions; test = held-out session.",
             "", "| fold | n | WA | UA | macro-F1 | best epoch |", "|---|---:|---:|---:|---:|---:|"]
    for s, f in summary["folds"].items():
        lines.append(f"| {s} | {f['n']} | {100 * f['wa']:.2f} | {100 * f['ua']:.2f} | {100 * f['macro_f1']:.2f} "
                     f"| {f['best_epoch']} |")
    m, pooled = summary["mean"], summary["pooled"]
    lines.append(f"| **mean ± std** | | {format_pm(m['wa'])} | {format_pm(m['ua'])} | {format_pm(m['macro_f1'])} | |")
    lines.append(f"| **pooled** | {pooled['n']} | {100 * pooled['wa']:.2f} | {100 * pooled['ua']:.2f} "
                 f"| {100 * pooled['macro_f1']:.2f} | |")
    oracle = summary.get("test_oracle_mean")
    if oracle and oracle["ua"]["n"]:
        lines += ["", f"For comparison only, best epoch chosen on the test fold (optimistic, not a result): "
                      f"WA {format_pm(oracle['wa'])}, UA {format_pm(oracle['ua'])}."]
    return "\n".join(lines) + "\n"
