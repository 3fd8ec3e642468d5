"""Emotion-recognition metrics: WA, UA, macro-F1, per-class recall and the confusion matrix.

UA (mean per-class recall) is the number that matters on imbalanced corpora like IEMOCAP: a model that
always says "neutral" has a high WA but a UA of 1/C. Pure numpy, so the run-time or a notebook can use
it without torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """[C, C] counts; row = true class, column = predicted class."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def metrics_from_confusion(cm: np.ndarray, classes: Sequence[str] | None = None) -> dict:
    """WA, UA, macro-F1 and per-class recall/F1 from a confusion matrix.

    UA averages recall over the classes that occur in the reference (a class with no example has no
    recall); macro-F1 averages over classes that occur in the reference or the predictions (sklearn's
    convention). Per-class values of absent classes are None.
    """
    cm = np.asarray(cm, dtype=np.int64)
    c = cm.shape[0]
    names = list(classes) if classes is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}x{c} confusion matrix")
    n = int(cm.sum())
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm)
    recall = {names[i]: (float(tp[i] / support[i]) if support[i] else None) for i in range(c)}
    f1 = {}
    for i in range(c):
        denom = support[i] + predicted[i]
        f1[names[i]] = float(2 * tp[i] / denom) if denom else None
    present = [v for v in recall.values() if v is not None]
    f1_present = [v for v in f1.values() if v is not None]
    return {
        "n": n,
        "wa": float(tp.sum() / n) if n else 0.0,
        "ua": float(np.mean(present)) if present else 0.0,
        "macro_f1": float(np.mean(f1_present)) if f1_present else 0.0,
        "per_class_recall": recall,
        "per_class_f1": f1,
        "support": {names[i]: int(support[i]) for i in range(c)},
        "classes": names,
        "confusion": cm.tolist(),
    }


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """All metrics for one set of predictions (see metrics_from_confusion for the conventions)."""
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, len(classes)), classes)


def mean_std(values: Sequence[float]) -> dict:
    """Mean and (population-free, ddof=1 when possible) standard deviation, for fold/seed summaries."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def format_pm(stats: dict, scale: float = 100.0, digits: int = 2) -> str:
    """'78.34 ± 1.20' (percent by default) from a mean_std() dict."""
    if stats.get("mean") is None:
        return "-"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"
