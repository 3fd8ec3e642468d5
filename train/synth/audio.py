"""Audio plumbing for the generator: sox as the resampler/effects rack, level setting, int16 output.

Every engine's raw output goes through `sox_effects` (resample to 16 kHz mono float) and `set_level`, so
the loudness cue is under our control: all voices are first brought to one reference speech level, then the
emotion's gain is applied. Without that, loudness would identify the engine, not the emotion.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from fdrl_core.audio import SAMPLE_RATE, to_int16  # noqa: F401  (re-exported for the generator's modules)

from .voices import SynthError

REFERENCE_DBFS = -26.0   # active-speech RMS every voice is normalised to before the emotion gain
LIMIT = 0.97             # soft limiter knee target (fraction of full scale)


def sox_effects(src: str | Path, effects: list[str] | None = None) -> np.ndarray:
    """Read `src`, apply sox effects, return float32 mono at 16 kHz. Dither is off (-D) so runs repeat."""
    cmd = ["sox", "-D", "-V1", str(src), "-t", "f32", "-c", "1", "-r", str(SAMPLE_RATE), "-"]
    cmd += list(effects or [])
    if not any(e == "rate" for e in (effects or [])):
        cmd += ["rate", "-h", str(SAMPLE_RATE)]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0:
        msg = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SynthError(f"sox failed on {src}: {msg[-1] if msg else 'exit ' + str(res.returncode)}")
    return np.frombuffer(res.stdout, dtype=np.float32).copy()


def active_rms(x: np.ndarray, frame: int = 320) -> float:
    """RMS over 20 ms frames within 35 dB of the loudest frame: speech level, not silence-diluted."""
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    e = np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    active = e[e >= e.max() * 10 ** (-35 / 10)]
    return float(np.sqrt(active.mean())) if active.size else 0.0


def soft_limit(x: np.ndarray, limit: float = LIMIT) -> np.ndarray:
    """Leave the signal linear below 0.7*limit and bend peaks above it smoothly towards `limit`."""
    knee = 0.7 * limit
    y = x.astype(np.float32, copy=True)
    over = np.abs(y) > knee
    if over.any():
        a = np.abs(y[over]) - knee
        y[over] = np.sign(y[over]) * (knee + (limit - knee) * np.tanh(a / (limit - knee)))
    return y


def set_level(x: np.ndarray, gain_db: float, reference_dbfs: float = REFERENCE_DBFS) -> np.ndarray:
    """Normalise active-speech RMS to the reference, add `gain_db`, soft-limit peaks."""
    rms = active_rms(x)
    if rms <= 1e-6:
        return x.astype(np.float32)
    target = 10 ** ((reference_dbfs + gain_db) / 20)
    return soft_limit(x * (target / rms))


def trim_silence(x: np.ndarray, pad_s: float = 0.12, threshold_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing silence to `pad_s`, so durations reflect speaking rate, not engine padding."""
    frame = 160
    n = len(x) // frame
    if n == 0:
        return x
    e = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    thr = max(e.max() * 10 ** (threshold_db / 20), 1e-5)
    idx = np.flatnonzero(e > thr)
    if idx.size == 0:
        return x
    pad = int(pad_s * SAMPLE_RATE)
    start = max(0, idx[0] * frame - pad)
    end = min(len(x), (idx[-1] + 1) * frame + pad)
    return x[start:end]

