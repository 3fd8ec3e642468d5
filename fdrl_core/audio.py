"""Audio in the one format every stage uses: float32 mono in [-1, 1] at 16 kHz."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An audio file that cannot be read or decoded."""


def to_mono_float(x: np.ndarray) -> np.ndarray:
    """int16/int32/float, 1-D or [samples, channels] -> float32 mono in [-1, 1]."""
    x = np.asarray(x)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif x.dtype == np.int32:
        x = x.astype(np.float32) / 2147483648.0
    else:
        x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased); 48 kHz and 44.1 kHz microphones are the common case."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read WAV/FLAC/OGG (anything libsndfile reads), downmix and resample to `sample_rate`."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise AudioError(f"cannot read audio file {path}: {str(e).splitlines()[0]}") from None
    if data.size == 0:
        raise AudioError(f"audio file {path} contains no samples")
    return resample(to_mono_float(data), sr, sample_rate)


def to_int16(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 with rounding (no dither: identical input gives identical bytes)."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
