"""Training-audio augmentation: pitch shift, tempo, vocal-tract length, gain, room reverb, additive noise.

Synthetic voices are clean and each engine has its own signature; random channel and delivery perturbations
make a model lean on prosodic trends rather than on one synthesizer's artefacts. Sizes are kept smaller than
the gaps between emotions (e.g. +-1.5 semitones vs. ~5 between happy and sad, +-3 dB vs. ~12 dB between
angry and sad), so an augmented copy keeps its label. Only the training split is augmented.

Voice-changing effects: pitch (sox: F0 and formants together), vocal-tract-length perturbation (VTLP: the
LPC spectral envelope warped by a factor alpha, F0 and timing kept: a longer or shorter vocal tract, i.e. a
different speaker), and a simulated room (pyroomacoustics image-source model: random shoebox size, wall
absorption, source and microphone positions), so a model hears each voice through many rooms.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from .audio import SAMPLE_RATE, soft_limit, sox_effects


@dataclass(frozen=True)
class AugmentConfig:
    p_pitch: float = 0.6
    pitch_cents: float = 150.0        # +- range
    p_tempo: float = 0.5
    tempo: tuple[float, float] = (0.9, 1.1)
    p_gain: float = 0.5
    gain_db: float = 3.0              # +- range
    p_reverb: float = 0.35
    reverberance: tuple[float, float] = (15.0, 60.0)  # legacy sox reverb range (kept for old plans)
    p_vtlp: float = 0.5
    vtlp_alpha: tuple[float, float] = (0.85, 1.15)    # formant scaling; ~+-15% spans adult speakers
    rt60: tuple[float, float] = (0.15, 0.8)           # simulated room reverberation time, seconds
    p_noise: float = 0.5
    snr_db: tuple[float, float] = (12.0, 30.0)


@dataclass(frozen=True)
class AugmentPlan:
    """One augmented copy's settings (None = that effect is off); drawn in the parent for determinism."""
    pitch_cents: float | None = None
    tempo: float | None = None
    gain_db: float | None = None
    reverberance: float | None = None
    room_scale: float | None = None
    snr_db: float | None = None
    noise_colour: str | None = None   # white | pink | brown
    noise_seed: int = 0
    vtlp_alpha: float | None = None   # formant scaling factor (VTLP)
    rt60: float | None = None         # simulated room (pyroomacoustics) instead of sox reverb

    def describe(self) -> str:
        """Short text for the manifest's `aug` field, e.g. 'pitch=+120c,tempo=0.95,noise=pink@18dB'."""
        parts = []
        if self.pitch_cents is not None:
            parts.append(f"pitch={self.pitch_cents:+.0f}c")
        if self.tempo is not None:
            parts.append(f"tempo={self.tempo:.3f}")
        if self.gain_db is not None:
            parts.append(f"gain={self.gain_db:+.1f}dB")
        if self.vtlp_alpha is not None:
            parts.append(f"vtlp={self.vtlp_alpha:.3f}")
        if self.rt60 is not None:
            parts.append(f"room=rt60:{self.rt60:.2f}s")
        elif self.reverberance is not None:
            parts.append(f"reverb={self.reverberance:.0f}/{self.room_scale:.0f}")
        if self.snr_db is not None:
            parts.append(f"noise={self.noise_colour}@{self.snr_db:.0f}dB")
        return ",".join(parts)


def sample_augment(rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> AugmentPlan:
    """Each effect is on with its probability; at least one is always on."""
    probs = np.array([cfg.p_pitch, cfg.p_tempo, cfg.p_gain, cfg.p_reverb, cfg.p_noise, cfg.p_vtlp])
    on = rng.random(6) < probs
    if not on.any():
        on[int(rng.integers(6))] = True
    u = rng.random(10)
    return AugmentPlan(
        pitch_cents=round(float((2 * u[0] - 1) * cfg.pitch_cents), 1) if on[0] else None,
        tempo=round(float(cfg.tempo[0] + (cfg.tempo[1] - cfg.tempo[0]) * u[1]), 3) if on[1] else None,
        gain_db=round(float((2 * u[2] - 1) * cfg.gain_db), 2) if on[2] else None,
        rt60=round(float(cfg.rt60[0] + (cfg.rt60[1] - cfg.rt60[0]) * u[3]), 3) if on[3] else None,
        snr_db=round(float(cfg.snr_db[0] + (cfg.snr_db[1] - cfg.snr_db[0]) * u[5]), 1) if on[4] else None,
        noise_colour=("white", "pink", "brown")[int(u[6] * 3)] if on[4] else None,
        noise_seed=int(u[7] * 2**31),
        vtlp_alpha=round(float(cfg.vtlp_alpha[0] + (cfg.vtlp_alpha[1] - cfg.vtlp_alpha[0]) * u[8]), 3)
        if on[5] else None,
    )


def vtlp(x: np.ndarray, alpha: float, n_fft: int = 512, hop: int = 128, lifter: int = 30) -> np.ndarray:
    """Vocal-tract-length perturbation: per STFT frame, the spectral envelope (cepstrally smoothed log
    magnitude) is warped along frequency by alpha (Jaitly and Hinton's piecewise-linear warp), and each bin
    is rescaled by warped/original envelope. Formants move by alpha; F0 harmonics, timing and phase stay.
    Output level matches the input's."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < n_fft or abs(alpha - 1.0) < 1e-3:
        return x.astype(np.float32)
    win = np.hanning(n_fft + 1)[:-1]
    n = 1 + (len(x) - n_fft) // hop
    frames = np.stack([x[i * hop: i * hop + n_fft] * win for i in range(n)])
    spec = np.fft.rfft(frames, axis=1)
    logmag = np.log(np.abs(spec) + 1e-8)
    cep = np.fft.irfft(logmag, axis=1)
    cep[:, lifter:-lifter] = 0.0
    env = np.fft.rfft(cep, axis=1).real[:, : spec.shape[1]]
    bins = np.arange(spec.shape[1], dtype=np.float64)
    # warped envelope at bin k = original envelope at the frequency that maps onto k
    src = _warp_inverse(bins / bins[-1] * np.pi, alpha) / np.pi * bins[-1]
    warped = np.stack([np.interp(src, bins, e) for e in env])
    out = np.fft.irfft(spec * np.exp(np.clip(warped - env, -6.0, 6.0)), n=n_fft, axis=1) * win
    y = np.zeros(len(x))
    norm = np.zeros(len(x))
    for i in range(n):
        y[i * hop: i * hop + n_fft] += out[i]
        norm[i * hop: i * hop + n_fft] += win ** 2
    y = y / np.maximum(norm, 1e-3)
    y *= np.sqrt(np.mean(x ** 2) / max(np.mean(y ** 2), 1e-12))
    return y.astype(np.float32)


def _warp_inverse(w: np.ndarray, alpha: float) -> np.ndarray:
    """Inverse of the piecewise-linear VTLP warp on [0, pi]: scale by alpha up to a knee, then a straight
    line that maps pi to pi, so nothing folds over Nyquist."""
    knee = 0.8 * np.pi * min(1.0, 1.0 / alpha)
    wk = alpha * knee  # image of the knee
    return np.where(w <= wk, w / alpha, knee + (w - wk) * (np.pi - knee) / (np.pi - wk))


def room_reverb(x: np.ndarray, rt60: float, seed: int) -> np.ndarray:
    """Convolve with a simulated room impulse response (pyroomacoustics image-source shoebox): random room
    size, absorption from Sabine's formula for `rt60`, random source and microphone positions."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    dims = np.array([rng.uniform(3, 9), rng.uniform(3, 7), rng.uniform(2.4, 3.5)])
    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # rt60 too short for this room: the most absorbent walls
        absorption, max_order = 0.99, 3
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 12))
    src = dims * rng.uniform(0.15, 0.85, 3)
    mic = dims * rng.uniform(0.15, 0.85, 3)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    y = fftconvolve(x.astype(np.float64), rir)[: len(x)]
    y *= np.sqrt(np.mean(np.square(x, dtype=np.float64)) / max(float(np.mean(y ** 2)), 1e-12))
    return y.astype(np.float32)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white, pink (1/f) or brown (1/f^2) noise, shaped in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1] if n > 1 else 1.0
    power = {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]
    x = np.fft.irfft(spec / np.maximum(f, 20.0) ** power, n)
    return (x / max(float(np.sqrt(np.mean(x**2))), 1e-9)).astype(np.float32)


def apply_augment(x: np.ndarray, plan: AugmentPlan, tmpdir: str | None = None) -> np.ndarray:
    """float32 16 kHz in -> augmented float32 16 kHz out (sox for pitch/tempo/reverb, numpy for the rest)."""
    effects: list[str] = []
    if plan.pitch_cents is not None:
        effects += ["pitch", f"{plan.pitch_cents:.0f}"]
    if plan.tempo is not None:
        effects += ["tempo", "-s", f"{plan.tempo:.3f}"]
    if plan.reverberance is not None and plan.rt60 is None:
        effects += ["reverb", f"{plan.reverberance:.0f}", "50", f"{plan.room_scale:.0f}"]
    y = x.astype(np.float32)
    if effects:
        with tempfile.TemporaryDirectory(dir=tmpdir, prefix="aug-") as td:
            src = os.path.join(td, "in.wav")
            sf.write(src, y, SAMPLE_RATE, subtype="FLOAT")
            y = sox_effects(src, effects)
    if plan.vtlp_alpha is not None:
        y = vtlp(y, plan.vtlp_alpha)
    if plan.rt60 is not None:
        y = room_reverb(y, plan.rt60, plan.noise_seed + 1)
    if plan.gain_db is not None:
        y = y * np.float32(10 ** (plan.gain_db / 20))
    if plan.snr_db is not None:
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
        noise = coloured_noise(len(y), plan.noise_colour or "white", np.random.default_rng(plan.noise_seed))
        y = y + noise * np.float32(rms * 10 ** (-plan.snr_db / 20))
    return soft_limit(y)
