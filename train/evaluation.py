"""Outputs of a finished run: predictions, metrics, calibration (temperature fitted on validation),
figures, the checkpoint with its meta.json."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fdrl_core.calibration import fit_temperature, reliability, softmax
from fdrl_core.checkpoint import save_checkpoint
from fdrl_core.config import FDRLConfig
from fdrl_core.model import FDRL
from train.corpora import Utterance
from train.data import FeatureDataset, collate
from train.metrics import classification_metrics
from train.plots import plot_confusion, plot_curves, plot_reliability
from train.settings import TrainConfig
from train.splits import Splits
from train.state import write_json

if TYPE_CHECKING:
    from train.loop import RunContext

log = logging.getLogger("train")


@torch.no_grad()
def predict_logits(model: FDRL, ds: FeatureDataset, device: torch.device, batch_size: int = 64
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """(logits [N, C], labels [N], mean classification loss) with the model in eval mode."""
    was_training = model.training
    model.eval()
    order = np.argsort(ds.lengths(), kind="stable")  # similar lengths together: less padding
    out = np.zeros((len(ds), model.cfg.num_classes), dtype=np.float32)
    loss_sum = 0.0
    for i in range(0, len(ds), batch_size):
        b = collate([ds[int(j)] for j in order[i: i + batch_size]]).to(device)
        logits = model(b.speech, b.speech_mask, b.text, b.text_mask).logits.float()
        loss_sum += float(nn.functional.cross_entropy(logits, b.y, reduction="sum"))
        out[b.index.cpu().numpy()] = logits.cpu().numpy()
    model.train(was_training)
    return out, np.asarray(ds.labels, dtype=np.int64), loss_sum / max(1, len(ds))


def predict(model: FDRL, ds: FeatureDataset, device: torch.device, batch_size: int = 64
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """(probabilities [N, C] with the model's temperature, labels [N], mean classification loss)."""
    logits, y, loss = predict_logits(model, ds, device, batch_size)
    return softmax(logits, float(model.temperature)).astype(np.float32), y, loss


def scores(model, ds, device, classes) -> dict:
    probs, y, loss = predict(model, ds, device)
    m = classification_metrics(y, probs.argmax(1), classes)
    return {"wa": m["wa"], "ua": m["ua"], "macro_f1": m["macro_f1"], "loss": loss}


def git_commit() -> str | None:
    """HEAD of the repository this code runs from, '+dirty' when tracked files changed; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_predictions(path: Path, utts: Sequence[Utterance], probs: np.ndarray, classes: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for u, p in zip(utts, probs):
            f.write(json.dumps({"id": u.id, "label": u.label, "pred": classes[int(p.argmax())],
                                "probs": {c: round(float(x), 6) for c, x in zip(classes, p)}}) + "\n")
    os.replace(tmp, path)


def finish(model: FDRL, cfg: FDRLConfig, tcfg: TrainConfig, splits: Splits, datasets, run_dir: Path,
            ctx: RunContext, st: dict, name: str) -> dict:
    """Evaluate the selected weights on val and test; rank 0 writes metrics, predictions, figures, checkpoint."""
    classes = list(cfg.labels.classes)
    device = ctx.dist.device
    result = {"run": name, "classes": classes, "best_epoch": st["best_epoch"], "epochs_run": st["epoch"],
              "stopped_early": st["stopped_early"], "selection": "best validation UA",
              "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
              "splits": splits.note, "val": None, "test": None, "test_oracle": None}
    # calibration: one temperature fitted on validation logits (decisions unchanged), stored in the weights
    logits = {"val": predict_logits(model, datasets[0], device)[:2]}
    if datasets[1] is not None:
        logits["test"] = predict_logits(model, datasets[1], device)[:2]
    temperature = fit_temperature(*logits["val"])
    model.temperature.fill_(temperature)
    result["calibration"] = {"temperature": round(temperature, 4), "fitted_on": "val", "bins": 15}
    for part, ds, utts in (("val", datasets[0], splits.val), ("test", datasets[1], splits.test)):
        if ds is None:
            continue
        lg, y = logits[part]
        probs = softmax(lg, temperature).astype(np.float32)
        result[part] = classification_metrics(y, probs.argmax(1), classes)
        rel = reliability(probs, y)
        result["calibration"][part] = {"ece": rel.ece, "ece_uncalibrated": reliability(softmax(lg), y).ece,
                                       "reliability": rel.to_dict()}
        if ctx.dist.main:
            write_predictions(run_dir / f"predictions_{part}.jsonl", utts, probs, classes)
            plot_confusion(result[part]["confusion"], classes, run_dir / f"confusion_{part}.png",
                           title=f"{name} {part}: WA {result[part]['wa']:.3f}  UA {result[part]['ua']:.3f}")
            plot_reliability(rel, run_dir / f"reliability_{part}.png",
                             title=f"{name} {part}: ECE {rel.ece:.3f} (T = {temperature:.2f})")
    if splits.test:
        best = max(st["history"], key=lambda h: h["test"]["ua"])
        result["test_oracle"] = {"epoch": best["epoch"], "ua": best["test"]["ua"], "wa": best["test"]["wa"],
                                 "note": "best epoch chosen ON TEST: an optimistic bound, not a result"}
    if ctx.dist.main:
        write_json(run_dir / "history.json", st["history"])
        plot_curves(st["history"], run_dir / "curves.png", title=name)
        short = {p: ({k: result[p][k] for k in ("wa", "ua", "macro_f1", "n")} if result[p] else None)
                 for p in ("val", "test")}
        meta = {"frontends": ctx.cache.identity(), "corpus": {**ctx.corpus, "sizes": result["sizes"],
                                                               "splits": splits.note},
                "labels": cfg.labels.name, "metrics": short, "best_epoch": st["best_epoch"],
                "calibration": {"temperature": result["calibration"]["temperature"], "fitted_on": "val",
                                **{f"ece_{p}": round(result["calibration"][p]["ece"], 4)
                                   for p in ("val", "test") if p in result["calibration"]}},
                "train_config": asdict(tcfg), "seed": tcfg.seed, "command": ctx.command or _argv(),
                "git_commit": git_commit(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch": torch.__version__, "world_size": ctx.dist.world}
        save_checkpoint(model, run_dir / "model", meta=meta)
        result["checkpoint"] = str(run_dir / "model")
        write_json(run_dir / "metrics.json", result)
        for part in ("val", "test"):
            if result[part]:
                log.info("[%s] %s: WA %.4f UA %.4f macro-F1 %.4f ECE %.4f (n=%d, T %.2f)", name, part,
                         result[part]["wa"], result[part]["ua"], result[part]["macro_f1"],
                         result["calibration"][part]["ece"], result[part]["n"], temperature)
    ctx.dist.barrier()
    return result


def _argv() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
