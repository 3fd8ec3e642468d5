"""Calibrated confidence: temperature scaling, expected calibration error, reliability bins.

A classifier trained with cross-entropy on a small, easy corpus is over-confident on anything unlike it
(the demo model said "SAD 1.00" to white noise). One temperature T, fitted on the validation split after
training (probabilities = softmax(logits / T)), fixes the scale without changing any decision; it is stored
in the checkpoint (FDRL.temperature), so every backend and the ONNX export apply it. Numpy only: the
evaluation and the run-time use the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The T minimising validation NLL: a log-spaced grid, then a golden-section refinement (the NLL is
    unimodal in log T). Deterministic, no optimiser state, never NaN (an empty set gives 1.0)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), 60))
    losses = [nll(logits, labels, t) for t in grid]
    i = int(np.argmin(losses))
    a, b = np.log(grid[max(0, i - 1)]), np.log(grid[min(len(grid) - 1, i + 1)])
    g = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - g * (b - a), a + g * (b - a)
        if nll(logits, labels, np.exp(c)) < nll(logits, labels, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))


@dataclass
class Reliability:
    """Per confidence bin: how many items, their mean confidence, and how many were right."""

    edges: np.ndarray  # [bins + 1]
    count: np.ndarray  # [bins]
    confidence: np.ndarray  # [bins] mean max-probability (nan where empty)
    accuracy: np.ndarray  # [bins] (nan where empty)
    ece: float

    def to_dict(self) -> dict:
        def clean(a):
            return [None if not np.isfinite(x) else round(float(x), 4) for x in a]
        return {"bins": len(self.count), "edges": [round(float(e), 4) for e in self.edges],
                "count": [int(c) for c in self.count], "confidence": clean(self.confidence),
                "accuracy": clean(self.accuracy), "ece": round(self.ece, 4)}


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Equal-width confidence bins; ECE = sum over bins of (items in bin / all) * |accuracy - confidence|."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    right = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / count
        acc = np.bincount(idx, weights=right.astype(np.float64), minlength=bins) / count
    n = max(1, len(conf))
    ece = float(np.nansum(count / n * np.abs(acc - mean_conf)))
    return Reliability(edges, count, mean_conf, acc, ece)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    return reliability(probs, labels, bins).ece
