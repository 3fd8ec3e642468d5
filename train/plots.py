"""Run figures: the confusion matrix and the training curves (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                   title: str = "") -> Path:
    """Row-normalised confusion matrix (recall per true class), with the counts in each cell."""
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.2, 1.1 * n + 1.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), classes, rotation=30, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="recall")
    if title:
        ax.set_title(title)
    return _save(fig, path)


LOSS_KEYS = ("total", "cls", "align", "disp", "pred")


def plot_curves(history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Left: training loss components per epoch (and validation cls loss). Right: validation UA/WA
    (and test UA when the run has a test split; shown for reference, never used for selection)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in LOSS_KEYS:
        vals = [h["train"].get(key) for h in history]
        if any(v for v in vals):
            ax_l.plot(epochs, vals, marker=".", label=f"train {key}")
    val_loss = [h["val"].get("loss") for h in history]
    if any(v is not None for v in val_loss):
        ax_l.plot(epochs, val_loss, "k--", marker=".", label="val cls")
    for ax in (ax_l, ax_m):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss")
    ax_l.legend(fontsize=7)
    ax_l.grid(alpha=0.3)
    ax_m.plot(epochs, [h["val"]["ua"] for h in history], marker="o", label="val UA")
    ax_m.plot(epochs, [h["val"]["wa"] for h in history], marker=".", alpha=0.6, label="val WA")
    if history and history[0].get("test"):
        ax_m.plot(epochs, [h["test"]["ua"] for h in history], ":", marker=".", alpha=0.6, label="test UA")
    best = max(history, key=lambda h: h["val"]["ua"], default=None)
    if best is not None:
        ax_m.axvline(best["epoch"], color="grey", lw=0.8, ls="--")
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel("score")
    ax_m.set_ylim(0, 1)
    ax_m.legend(fontsize=7)
    ax_m.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_reliability(rel, path: str | Path, title: str = "") -> Path:
    """Reliability diagram (fdrl_core.calibration.Reliability): accuracy per confidence bin against the
    diagonal, bar width = bin, item counts underneath."""
    plt = _pyplot()
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(4.6, 5.2), height_ratios=(3, 1), sharex=True)
    centres = (rel.edges[:-1] + rel.edges[1:]) / 2
    width = rel.edges[1] - rel.edges[0]
    ok = rel.count > 0
    ax.bar(centres[ok], np.nan_to_num(rel.accuracy[ok]), width=width * 0.95, color="#4c72b0", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.scatter(rel.confidence[ok], np.nan_to_num(rel.accuracy[ok]), s=10, color="black", zorder=3,
               label="mean confidence")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title or f"ECE {rel.ece:.3f}", fontsize=9)
    axn.bar(centres, rel.count, width=width * 0.95, color="#999999")
    axn.set_xlim(0, 1)
    axn.set_xlabel("confidence (max probability)")
    axn.set_ylabel("items")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
