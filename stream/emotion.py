"""Emotion for one utterance: FDRL on the shared Whisper frames + the transcript, through a backend.

The backend (torch / onnxruntime / tensorrt) only sees speech frames [T, 384] and the text (or None when
the transcript was judged unreliable). Which model runs, and where it comes from, is decided here:
`--model`, else $FDRL_MODEL, else the bundled demo checkpoint.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fdrl_core.assets import DEMO_MODEL_ENV, default_model_path, demo_model_dir
from fdrl_core.speaker_norm import SPEAKER_NORMS, SpeakerNorm
from fdrl_core.uncertainty import UncertaintyConfig, decide


class ModelMissing(FileNotFoundError):
    """No emotion model where one was expected (one line for the user)."""


@dataclass
class EmotionConfig:
    backend: str = "auto"  # auto | torch | onnxruntime | tensorrt
    model: str | None = None  # checkpoint folder, ONNX folder or engine; default: the bundled demo model
    device: str = "cpu"  # torch / onnxruntime device: cpu | cuda | auto (TensorRT always uses the GPU)
    threads: int = 1  # CPU threads of the emotion model (0: the library's default)
    # when an outcome is flagged `uncertain` (low calibrated confidence, or audio that is not speech-like)
    uncertainty: UncertaintyConfig = field(default_factory=UncertaintyConfig)


@dataclass
class Outcome:
    """The backend's prediction plus the verdict on it: `uncertain` with a reason when the model should
    not be believed (label and scores are kept)."""

    label: str
    probs: dict[str, float]
    confidence: float
    modalities: tuple[str, ...]
    uncertain: bool = False
    uncertain_reason: str | None = None


def resolve_model(model: str | Path | None) -> Path:
    """The model path to load, or ModelMissing with what to do about it."""
    if model:
        path = Path(model).expanduser()
        if not path.exists():
            raise ModelMissing(f"emotion model not found: {path}")
        return path
    path = default_model_path()
    if not path.exists():
        if path == demo_model_dir():
            raise ModelMissing(f"no emotion model: the bundled demo model ({path}) is not installed; "
                               f"pass --model PATH or set {DEMO_MODEL_ENV}")
        raise ModelMissing(f"emotion model not found: {path} (from ${DEMO_MODEL_ENV})")
    return path


class EmotionStage:
    """Loads the backend once; `classify` returns the backend's EmotionResult and its time in ms."""

    def __init__(self, cfg: EmotionConfig | None = None):
        from stream.backends import open_backend

        self.cfg = cfg = cfg or EmotionConfig()
        self.model_path = resolve_model(cfg.model)
        self.backend = open_backend(cfg.backend, self.model_path, device=cfg.device, threads=cfg.threads or None)
        if "torch" in sys.modules and cfg.threads:
            # one small model per utterance: torch's default thread pool only spins against CTranslate2
            # (measured here: MiniLM 480 ms with the default pool next to a busy CPU, 35 ms with one thread)
            sys.modules["torch"].set_num_threads(cfg.threads)

    @property
    def name(self) -> str:
        return f"{getattr(self.backend, 'name', '') or self.cfg.backend}:{self.model_path.name}"

    def speaker_state(self) -> SpeakerNorm | None:
        """Per-stream state for a model trained with speech_norm="speaker" (running statistics of the
        stream's voice; the caller commits published finals to it), None for every other model."""
        norm = getattr(self.backend, "speech_norm", "none")
        if norm not in SPEAKER_NORMS:
            return None
        return SpeakerNorm.for_mode(norm, getattr(self.backend, "speaker_decay", None))

    def prepare(self, frames: np.ndarray, speaker: SpeakerNorm | None = None) -> np.ndarray:
        """The frames the backend gets: speaker-normalised with the stream's running statistics when the
        model wants it (no state change; without a state: as on the first utterance of a stream)."""
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        if getattr(self.backend, "speech_norm", "none") in SPEAKER_NORMS:
            frames = (speaker or self.speaker_state()).normalise(frames)
        return frames

    def classify(self, frames: np.ndarray, text: str | None, audio: np.ndarray | None = None,
                 no_speech_prob: float | None = None, speaker: SpeakerNorm | None = None) -> tuple[Outcome, float]:
        """(outcome, milliseconds). With the utterance's audio and/or Whisper's no-speech probability the
        outcome is also checked for speech-likeness (fdrl_core.uncertainty, shared with evaluation).
        `speaker`: the stream's speaker_state() (read, never changed here)."""
        t0 = time.perf_counter()
        result = self.backend.predict(self.prepare(frames, speaker), text or None)
        verdict = decide(result.confidence, audio, no_speech_prob, self.cfg.uncertainty)
        outcome = Outcome(result.label, result.probs, result.confidence, tuple(result.modalities),
                          verdict.uncertain, verdict.reason)
        return outcome, (time.perf_counter() - t0) * 1000

