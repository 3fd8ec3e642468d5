"""When the emotion model does not know: the `uncertain` outcome, decided the same way at run time
(stream.emotion) and in evaluation (train evaluate).

An outcome is uncertain, with a reason, when the audio is not speech-like (fdrl_core.speechness: noise,
tones, music, or the recogniser hears no speech) or when the calibrated confidence is below
`min_confidence`. The label and scores are kept either way: a client can still show them, greyed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fdrl_core.speechness import Speechness, SpeechnessConfig, measure


@dataclass(frozen=True)
class UncertaintyConfig:
    # below this calibrated probability of the winning class the label is only a guess; with 4 classes a
    # temperature-scaled 0.5 means "the best class is at most as likely as all the others together"
    min_confidence: float = 0.5
    check_speech: bool = True
    speechness: SpeechnessConfig = field(default_factory=SpeechnessConfig)


@dataclass
class Verdict:
    uncertain: bool
    reason: str | None
    speechness: Speechness | None


def decide(confidence: float, audio: np.ndarray | None = None, no_speech_prob: float | None = None,
           cfg: UncertaintyConfig = UncertaintyConfig(), sample_rate: int = 16000) -> Verdict:
    """The verdict for one prediction; the speech check runs when audio (or a no-speech probability) is given."""
    sp = None
    if cfg.check_speech and (audio is not None or no_speech_prob is not None):
        if audio is not None:
            sp = measure(audio, sample_rate, no_speech_prob, cfg.speechness)
        elif no_speech_prob > cfg.speechness.max_no_speech_prob:
            sp = Speechness(False, f"the recogniser hears no speech (no-speech probability {no_speech_prob:.2f})",
                            0.0, 0.0, 0.0, 0.0, no_speech_prob)
        if sp is not None and not sp.speech_like:
            return Verdict(True, f"not speech: {sp.reason}", sp)
    if confidence < cfg.min_confidence:
        return Verdict(True, f"low confidence ({confidence:.2f} < {cfg.min_confidence:.2f})", sp)
    return Verdict(False, None, sp)
