"""Is this audio speech at all? A cheap check shared by the run-time and `python -m train evaluate`.

An emotion model only knows speech: fed white noise or a square wave it still picks a label, often with
high confidence. Before a label is presented as an answer, the utterance's audio is checked here, and a
failed check makes the outcome `uncertain` (label and scores kept, with the reason). Signals, all from
the waveform in a few milliseconds (numpy only):

- level dynamics: speech alternates syllables and gaps (10th-90th percentile of frame energy spans
  15-40 dB); stationary noise, hum and held tones stay within a few dB;
- spectral flatness: white/pink noise has a flat spectrum (Wiener entropy near 1 in the voice band),
  voiced speech a harmonic, sloped one;
- pitch behaviour: speech F0 glides all the time; tones and synthesised or played notes hold an exact
  pitch for many frames (share of consecutive voiced frames whose F0 moves less than 0.3 %);
- the recogniser's own no-speech probability (Whisper), when the caller has it.

Thresholds were set on the project's synthetic speech (every espeak-ng voice and variant, festival) and on
noise, tones, chords and note sequences (tests/test_speechness.py); a real deployment should check them on
its own microphones, which is why they are fields of a config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fdrl_core.audio import SAMPLE_RATE

FRAME = 512  # 32 ms
HOP = 256  # 16 ms


@dataclass(frozen=True)
class SpeechnessConfig:
    min_dynamics_db: float = 8.0  # below: a steady signal (noise, hum, a held tone)
    max_flatness: float = 0.30  # above (with little voicing): noise
    noise_max_voiced: float = 0.25
    max_steady_pitch: float = 0.8  # share of voiced frame pairs with (near) constant F0 above this: tones/notes
    steady_pitch_rel: float = 0.003
    min_voiced_for_pitch: float = 0.3  # the held-pitch rule needs enough voiced frames to be meaningful
    max_no_speech_prob: float = 0.8  # Whisper's no-speech probability above this: no speech
    min_seconds: float = 0.25  # shorter audio is not judged (too little to tell)


@dataclass
class Speechness:
    speech_like: bool
    reason: str | None  # why not (None when speech-like)
    dynamics_db: float
    flatness: float
    voiced: float
    steady_pitch: float
    no_speech_prob: float | None

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _frames(x: np.ndarray) -> np.ndarray:
    n = 1 + (len(x) - FRAME) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    return x[idx]


def _pitch(frames: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(voicing strength [n], F0 in Hz [n]) from the normalised autocorrelation, 70-400 Hz, with
    parabolic interpolation of the peak (sub-sample lag, so a held pitch is seen as held)."""
    f = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(f * np.hanning(FRAME), n=2 * FRAME, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :FRAME]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(sr / 400), int(sr / 70)
    seg = ac[:, lo:hi]
    k = np.argmax(seg, axis=1)
    strength = seg[np.arange(len(seg)), k]
    kk = np.clip(k, 1, seg.shape[1] - 2)
    a, b, c = (seg[np.arange(len(seg)), kk - 1], seg[np.arange(len(seg)), kk], seg[np.arange(len(seg)), kk + 1])
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (a - c) / np.where(np.abs(denom) > 1e-9, denom, 1.0), 0.0)
    lag = lo + kk + np.clip(shift, -1, 1)
    return strength, sr / lag


def measure(audio: np.ndarray, sr: int = SAMPLE_RATE, no_speech_prob: float | None = None,
            cfg: SpeechnessConfig = SpeechnessConfig()) -> Speechness:
    """Speech-likeness of one utterance (float32 mono; any level)."""
    x = np.asarray(audio, dtype=np.float64).ravel()
    if len(x) < max(FRAME, int(cfg.min_seconds * sr)):
        return Speechness(True, None, 0.0, 0.0, 0.0, 0.0, no_speech_prob)
    frames = _frames(x)
    energy = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    active = energy > energy.max() - 45.0
    if energy.max() < -85.0:  # digital silence
        return Speechness(False, "silence", 0.0, 0.0, 0.0, 0.0, no_speech_prob)
    p10, p90 = np.percentile(energy[active], [10, 90])
    dynamics = float(p90 - p10)

    spec = np.abs(np.fft.rfft(frames[active] * np.hanning(FRAME), axis=1)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(FRAME, 1 / sr)
    band = (freqs >= 100) & (freqs <= min(6000, sr / 2 - 1))
    sb = spec[:, band]
    flat = np.exp(np.mean(np.log(sb), axis=1)) / np.mean(sb, axis=1)
    flatness = float(np.median(flat))

    strength, f0 = _pitch(frames[active], sr)
    voiced_mask = strength > 0.6
    voiced = float(voiced_mask.mean()) if len(voiced_mask) else 0.0
    pairs = voiced_mask[1:] & voiced_mask[:-1]
    if pairs.sum() >= 5:
        rel = np.abs(np.diff(f0))[pairs] / f0[1:][pairs]
        steady = float(np.mean(rel < cfg.steady_pitch_rel))
    else:
        steady = 0.0

    reason = None
    if no_speech_prob is not None and no_speech_prob > cfg.max_no_speech_prob:
        reason = f"the recogniser hears no speech (no-speech probability {no_speech_prob:.2f})"
    elif flatness > cfg.max_flatness and voiced < cfg.noise_max_voiced:
        reason = f"noise-like (spectral flatness {flatness:.2f}, voiced {voiced:.0%})"
    elif dynamics < cfg.min_dynamics_db:
        reason = f"steady signal, not speech (level varies only {dynamics:.1f} dB)"
    elif steady > cfg.max_steady_pitch and voiced >= cfg.min_voiced_for_pitch:
        reason = f"tone or music (pitch held exactly in {steady:.0%} of voiced frames)"
    return Speechness(reason is None, reason, dynamics, flatness, voiced, steady, no_speech_prob)
