"""Emotion -> prosody: per-emotion ranges, sampled per utterance.

Settings are drawn uniformly from overlapping ranges rather than fixed per emotion, so a model has to learn
the trends (angry: loud, fast, wide pitch range; sad: slow, low, narrow, quiet; happy: high, wide, a little
fast; neutral: in the middle) instead of recognising four exact settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LABELS = ("neutral", "happy", "angry", "sad")


@dataclass(frozen=True)
class Prosody:
    """Offsets from a voice's own default delivery; engines translate them into their own controls."""
    pitch_st: float = 0.0     # mean pitch shift, semitones
    range_mult: float = 1.0   # pitch range (F0 spread) multiplier
    rate_mult: float = 1.0    # speaking rate multiplier (>1 faster)
    gain_db: float = 0.0      # loudness relative to the corpus reference level

    def as_dict(self) -> dict:
        return {k: round(float(v), 3) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ProsodyRange:
    pitch_st: tuple[float, float]
    range_mult: tuple[float, float]
    rate_mult: tuple[float, float]
    gain_db: tuple[float, float]


# Directions follow the acoustic-correlates literature (e.g. Scherer 2003, Juslin & Laukka 2003); widths are
# chosen so neighbouring emotions overlap on any single cue but separate on the combination.
EMOTION_PROSODY: dict[str, ProsodyRange] = {
    "neutral": ProsodyRange(pitch_st=(-1.0, 1.0), range_mult=(0.85, 1.15), rate_mult=(0.93, 1.07),
                            gain_db=(-1.5, 1.5)),
    "happy": ProsodyRange(pitch_st=(2.0, 5.0), range_mult=(1.4, 2.0), rate_mult=(1.04, 1.18),
                          gain_db=(0.5, 3.5)),
    "angry": ProsodyRange(pitch_st=(0.5, 3.5), range_mult=(1.25, 1.8), rate_mult=(1.12, 1.35),
                          gain_db=(4.0, 8.0)),
    "sad": ProsodyRange(pitch_st=(-4.0, -1.5), range_mult=(0.35, 0.7), rate_mult=(0.70, 0.88),
                        gain_db=(-9.0, -4.0)),
}


def sample_prosody(emotion: str, rng: np.random.Generator) -> Prosody:
    """One random delivery for `emotion`; the same rng state gives the same delivery."""
    if emotion not in EMOTION_PROSODY:
        raise ValueError(f"unknown emotion {emotion!r}; choose from {', '.join(LABELS)}")
    r = EMOTION_PROSODY[emotion]
    u = rng.random(4)
    lerp = lambda lo_hi, t: lo_hi[0] + (lo_hi[1] - lo_hi[0]) * float(t)  # noqa: E731
    return Prosody(pitch_st=round(lerp(r.pitch_st, u[0]), 3), range_mult=round(lerp(r.range_mult, u[1]), 3),
                   rate_mult=round(lerp(r.rate_mult, u[2]), 3), gain_db=round(lerp(r.gain_db, u[3]), 3))
