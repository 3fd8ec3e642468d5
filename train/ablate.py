"""Ablations (FDRL_SPEC.md 9.3): the full model against itself without each fine-grained component and
against single-modality baselines, over seeds (and LOSO folds), all from one feature cache."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from fdrl_core.config import FDRLConfig
from train.corpora import Utterance
from train.metrics import format_pm, mean_std
from train.trainer import RunContext, TrainConfig, apply_overrides, run_experiment

log = logging.getLogger("train")

# name -> (row title, overrides of FDRLConfig)
VARIANTS: dict[str, tuple[str, dict]] = {
    "full": ("FDRL (full)", {}),
    "no_align": ("w/o fine-grained alignment", {"align_weight": 0.0}),
    "no_disp": ("w/o fine-grained disparity", {"disp_weight": 0.0}),
    "no_pred": ("w/o fine-grained predictor", {"pred_weight": 0.0}),
    "speech_only": ("speech only", {"modalities": ("speech",)}),
    "text_only": ("text only", {"modalities": ("text",)}),
    "no_components": ("w/o all three components", {"align_weight": 0.0, "disp_weight": 0.0, "pred_weight": 0.0}),
    "variant_b": ("alignment variant B (cross-attention)", {"align_variant": "B"}),
    "grl": ("alignment by gradient reversal (before issue 11)", {"adversary": "grl"}),
}
DEFAULT_VARIANTS = ("full", "no_align", "no_disp", "no_pred", "speech_only", "text_only")
KEYS = ("wa", "ua", "macro_f1")


def check_variants(names: Sequence[str]) -> list[str]:
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise ValueError(f"unknown ablation variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return names


def _run_scores(result: dict, folds: str) -> tuple[list[dict], str]:
    """Per-run scores from run_experiment's result: one per fold (LOSO) or one (test if any, else val)."""
    if folds == "loso":
        return [{"fold": s, **{k: f[k] for k in KEYS}} for s, f in result["folds"].items()], "test"
    part = "test" if result.get("test") else "val"
    return [{k: result[part][k] for k in KEYS}], part


def run_ablation(utts: Sequence[Utterance], out: str | Path, cfg: FDRLConfig, tcfg: TrainConfig, ctx: RunContext,
                 *, variants: Sequence[str] = DEFAULT_VARIANTS, seeds: Sequence[int] = (0,),
                 folds: str = "none") -> dict:
    """Train every variant for every seed (x fold) under out/<variant>/seed-<s>; write ablation.{json,md}."""
    variants = check_variants(variants)
    out = Path(out)
    table: dict[str, dict] = {}
    evaluated_on = "test"
    for name in variants:
        title, overrides = VARIANTS[name]
        vcfg, _ = apply_overrides(cfg, tcfg, overrides)
        runs = []
        for seed in seeds:
            res = run_experiment(utts, out / name / f"seed-{seed}", vcfg, replace(tcfg, seed=seed), ctx,
                                 folds=folds, name=f"{name} seed {seed}")
            scores, evaluated_on = _run_scores(res, folds)
            runs += [{"seed": seed, **s} for s in scores]
        table[name] = {"title": title, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in overrides.items()},
                       "runs": runs, **{k: mean_std([r[k] for r in runs]) for k in KEYS}}
        log.info("ablation %-14s WA %s  UA %s  F1 %s (%d runs)", name, format_pm(table[name]["wa"]),
                 format_pm(table[name]["ua"]), format_pm(table[name]["macro_f1"]), len(runs))
    summary = {"evaluated_on": evaluated_on, "folds": folds, "seeds": list(seeds), "variants": table,
               "base_config": cfg.to_dict()}
    if ctx.dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "ablation.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out / "ablation.md").write_text(ablation_markdown(summary))
    return summary


def ablation_markdown(summary: dict) -> str:
    over = "leave-one-session-out folds x seeds" if summary["folds"] == "loso" else "seeds"
    part = summary["evaluated_on"]
    base = summary.get("base_config", {})
    lines = ["## FDRL ablations", "",
             f"Scores in % on the **{part}** split, mean ± std over {over} {summary['seeds']}; base model "
             f"d_model {base.get('d_model', '?')}, {base.get('encoder', '?')} encoders, alignment variant "
             f"{base.get('align_variant', '?')}. "
             "Model selection on validation UA." + (" No test split: validation scores are optimistic."
                                                   if part == "val" else ""), "",
             "| variant | WA | UA | macro-F1 | ΔUA vs full | runs |", "|---|---:|---:|---:|---:|---:|"]
    full = summary["variants"].get("full")
    for row in summary["variants"].values():
        delta = "-"
        if full is not None and row is not full and row["ua"]["mean"] is not None:
            delta = f"{100 * (row['ua']['mean'] - full['ua']['mean']):+.2f}"
        lines.append(f"| {row['title']} | {format_pm(row['wa'])} | {format_pm(row['ua'])} | "
                     f"{format_pm(row['macro_f1'])} | {delta} | {row['wa']['n']} |")
    return "\n".join(lines) + "\n"
