"""Training-audio augmentation: pitch shift, tempo, gain, room reverb, additive noise.

Synthetic voices are clean and each engine has its own signature; random channel and delivery perturbations
make a model lean on prosodic trends rather than on one synthesizer's artefacts. Sizes are kept smaller than
the gaps between emotions (e.g. +-1.5 semitones vs. ~5 between happy and sad, +-3 dB vs. ~12 dB between
angry and sad), so an augmented copy keeps its label. Only the training split is augmented.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf

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
    reverberance: tuple[float, float] = (15.0, 60.0)
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

    def describe(self) -> str:
        """Short text for the manifest's `aug` field, e.g. 'pitch=+120c,tempo=0.95,noise=pink@18dB'."""
        parts = []
        if self.pitch_cents is not None:
            parts.append(f"pitch={self.pitch_cents:+.0f}c")
        if self.tempo is not None:
            parts.append(f"tempo={self.tempo:.3f}")
        if self.gain_db is not None:
            parts.append(f"gain={self.gain_db:+.1f}dB")
        if self.reverberance is not None:
            parts.append(f"reverb={self.reverberance:.0f}/{self.room_scale:.0f}")
        if self.snr_db is not None:
            parts.append(f"noise={self.noise_colour}@{self.snr_db:.0f}dB")
        return ",".join(parts)


def sample_augment(rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> AugmentPlan:
    """Each effect is on with its probability; at least one is always on."""
    on = rng.random(5) < np.array([cfg.p_pitch, cfg.p_tempo, cfg.p_gain, cfg.p_reverb, cfg.p_noise])
    if not on.any():
        on[int(rng.integers(5))] = True
    u = rng.random(8)
    return AugmentPlan(
        pitch_cents=round(float((2 * u[0] - 1) * cfg.pitch_cents), 1) if on[0] else None,
        tempo=round(float(cfg.tempo[0] + (cfg.tempo[1] - cfg.tempo[0]) * u[1]), 3) if on[1] else None,
        gain_db=round(float((2 * u[2] - 1) * cfg.gain_db), 2) if on[2] else None,
        reverberance=round(float(cfg.reverberance[0] + (cfg.reverberance[1] - cfg.reverberance[0]) * u[3]), 1)
        if on[3] else None,
        room_scale=round(float(30 + 70 * u[4]), 1) if on[3] else None,
        snr_db=round(float(cfg.snr_db[0] + (cfg.snr_db[1] - cfg.snr_db[0]) * u[5]), 1) if on[4] else None,
        noise_colour=("white", "pink", "brown")[int(u[6] * 3)] if on[4] else None,
        noise_seed=int(u[7] * 2**31),
    )


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
    if plan.reverberance is not None:
        effects += ["reverb", f"{plan.reverberance:.0f}", "50", f"{plan.room_scale:.0f}"]
    y = x.astype(np.float32)
    if effects:
        with tempfile.TemporaryDirectory(dir=tmpdir, prefix="aug-") as td:
            src = os.path.join(td, "in.wav")
            sf.write(src, y, SAMPLE_RATE, subtype="FLOAT")
            y = sox_effects(src, effects)
    if plan.gain_db is not None:
        y = y * np.float32(10 ** (plan.gain_db / 20))
    if plan.snr_db is not None:
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
        noise = coloured_noise(len(y), plan.noise_colour or "white", np.random.default_rng(plan.noise_seed))
        y = y + noise * np.float32(rms * 10 ** (-plan.snr_db / 20))
    return soft_limit(y)
