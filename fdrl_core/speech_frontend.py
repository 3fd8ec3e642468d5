"""Speech frames for FDRL from the Whisper encoder (CTranslate2), the same pass the recogniser uses.

The run-time's ASR encodes each utterance once; `frames(encoder_output=...)` turns that output into
FDRL's input, so emotion costs no second acoustic pass. Training features go through the same code.

The encoder window is sized to the utterance (`WindowPolicy`): Whisper's encoder cost grows faster than
linearly with the window, and CTranslate2 accepts fewer than 3000 mel frames, so a 4 s utterance encoded
in a 10 s window costs a fraction of the padded 30 s window. The encoder output depends on the padding,
so a model's training features and its run-time frames must come from the same policy: the policy is
part of the feature-cache identity and of the trained model's meta.json (frontends.speech.window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdrl_core.assets import whisper_model_dir
from fdrl_core.audio import SAMPLE_RATE

HOP = 160  # mel hop at 16 kHz
FRAME_SAMPLES = 2 * HOP  # the encoder's conv stride halves the mel rate: 50 frames/s
WINDOW_SECONDS = 30  # Whisper's positional embeddings end here: no window is longer


@dataclass(frozen=True)
class WindowPolicy:
    """Encoder window for an utterance: the smallest bucket >= max(floor, utterance + margin), at most 30 s.

    Few buckets keep the set of encoder shapes small (caches, TensorRT profiles, batching across streams).
    """

    floor_s: float = 10.0
    margin_s: float = 1.0
    buckets_s: tuple[float, ...] = (10.0, 15.0, 20.0, 30.0)

    def __post_init__(self):
        buckets = tuple(sorted({float(b) for b in self.buckets_s}))
        if not buckets or buckets[0] <= 0 or buckets[-1] > WINDOW_SECONDS:
            raise ValueError(f"window buckets must be in (0, {WINDOW_SECONDS}] s, got {self.buckets_s}")
        if any(round(b * SAMPLE_RATE) % FRAME_SAMPLES for b in buckets):
            raise ValueError(f"window buckets must be multiples of {FRAME_SAMPLES / SAMPLE_RATE} s")
        if self.floor_s < 0 or self.margin_s < 0:
            raise ValueError("window floor and margin must be >= 0")
        object.__setattr__(self, "buckets_s", buckets)
        object.__setattr__(self, "floor_s", float(self.floor_s))
        object.__setattr__(self, "margin_s", float(self.margin_s))

    @classmethod
    def legacy(cls) -> WindowPolicy:
        """Every utterance in one padded 30 s window (models trained before window policies existed)."""
        return cls(floor_s=WINDOW_SECONDS, margin_s=0.0, buckets_s=(WINDOW_SECONDS,))

    def window_s(self, num_samples: int) -> float:
        need = max(self.floor_s, num_samples / SAMPLE_RATE + self.margin_s)
        return next((b for b in self.buckets_s if b >= need), float(WINDOW_SECONDS))

    def mel_frames(self, num_samples: int) -> int:
        """Width of the mel input (100 frames/s) for an utterance of `num_samples`."""
        return int(round(self.window_s(num_samples) * SAMPLE_RATE / HOP))

    def to_dict(self) -> dict:
        return {"floor_s": self.floor_s, "margin_s": self.margin_s, "buckets_s": list(self.buckets_s)}

    @classmethod
    def from_dict(cls, data: Mapping | None) -> WindowPolicy:
        """From a meta.json / sidecar entry; None (an older model) means the legacy 30 s window."""
        if data is None:
            return cls.legacy()
        try:
            return cls(floor_s=float(data["floor_s"]), margin_s=float(data["margin_s"]),
                       buckets_s=tuple(float(b) for b in data["buckets_s"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"invalid speech window policy {dict(data)!r}: {e}") from None

    def describe(self) -> str:
        if self == self.legacy():
            return "30 s (legacy)"
        return (f"utterance + {self.margin_s:g} s, floor {self.floor_s:g} s, buckets "
                f"{'/'.join(f'{b:g}' for b in self.buckets_s)} s")


# chosen by `python -m bench windows` (README, "Encoder windows"): the fastest policy within +1.0 WER point
# of the 30 s window; 4.4x less encoder CPU per utterance on a 2-core EPYC. Changing it changes every
# feature: models trained before keep theirs (meta.json), new ones need new features.
DEFAULT_WINDOW = WindowPolicy(floor_s=10.0, margin_s=1.0, buckets_s=(10.0, 15.0, 20.0, 30.0))


def window_from_meta(meta: Mapping) -> WindowPolicy:
    """The policy a trained model's features were made with (meta.json: frontends.speech.window)."""
    speech = (meta.get("frontends") or {}).get("speech") or {}
    return WindowPolicy.from_dict(speech.get("window"))


def window_for_model(model: str | Path) -> WindowPolicy:
    """The policy an emotion model's speech features were made with, whatever form the model has:
    checkpoint folder (meta.json), ONNX export folder (fdrl.json: extra.speech_window) or TensorRT
    engine (the ONNX folder its sidecar names). A model that does not say: the legacy 30 s window."""
    import json

    from fdrl_core.checkpoint import META
    from fdrl_core.export_format import ONNX_SIDECAR, EngineSidecar

    path = Path(model).expanduser()
    try:
        if path.is_file():  # an engine
            side = EngineSidecar.path_for(path)
            if not side.is_file():
                return WindowPolicy.legacy()
            path = Path(json.loads(side.read_text()).get("onnx_dir") or "")
        if (path / META).is_file():
            return window_from_meta(json.loads((path / META).read_text()))
        if (path / ONNX_SIDECAR).is_file():
            extra = json.loads((path / ONNX_SIDECAR).read_text()).get("extra") or {}
            return WindowPolicy.from_dict(extra.get("speech_window"))
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{model}: cannot read its speech window policy ({e})") from None
    return WindowPolicy.legacy()


def encoder_frames_for(num_samples: int) -> int:
    """How many encoder frames cover `num_samples` of real audio (the rest of the window is padding)."""
    return int(min(WINDOW_SECONDS * SAMPLE_RATE // FRAME_SAMPLES, max(1, math.ceil(num_samples / FRAME_SAMPLES))))


class SpeechFrontend:
    """Whisper encoder frames [T, d] (d = 384 for tiny.en) for one utterance of up to 30 s.

    `window`: the encoder window policy; the run-time sets the one of the model it loads."""

    def __init__(self, model_path: str | Path | None = None, *, whisper=None, device: str = "cpu",
                 compute_type: str = "int8", cpu_threads: int = 0, window: WindowPolicy | None = None):
        self.window = window or DEFAULT_WINDOW
        if whisper is None:
            from faster_whisper import WhisperModel

            self.model_dir = whisper_model_dir(model_path)
            try:
                whisper = WhisperModel(str(self.model_dir), device=device, compute_type=compute_type,
                                       cpu_threads=cpu_threads, local_files_only=True)
            except (RuntimeError, ValueError) as e:
                raise RuntimeError(f"cannot load Whisper model from {self.model_dir}: {e}") from None
        else:
            self.model_dir = Path(model_path) if model_path else None
        self.whisper = whisper  # shared with the recogniser at run time
        self.compute_type = compute_type
        # CTranslate2's config.json does not carry the encoder width; one probe pass tells it
        # (and warms the model up, so the first real utterance is not slow)
        self.dim = int(self.encode(np.zeros(FRAME_SAMPLES, dtype=np.float32)).shape[-1])

    @property
    def name(self) -> str:
        return f"whisper-ct2:{self.model_dir.name if self.model_dir else 'external'}:{self.compute_type}"

    def mel(self, audio: np.ndarray, window: WindowPolicy | None = None) -> np.ndarray:
        """Log-mel features zero-padded (as faster-whisper pads) or cut to the utterance's encoder
        window, [n_mels, window_s * 100]."""
        fe = self.whisper.feature_extractor
        audio = np.asarray(audio, dtype=np.float32)[: WINDOW_SECONDS * SAMPLE_RATE]
        width = (window or self.window).mel_frames(len(audio))
        feats = fe(audio)
        if feats.shape[-1] < width:
            feats = np.pad(feats, ((0, 0), (0, width - feats.shape[-1])))
        return np.ascontiguousarray(feats[:, :width], dtype=np.float32)

    def window_groups(self, lengths: list[int], window: WindowPolicy | None = None) -> dict[int, list[int]]:
        """Indices of utterances (by sample count) grouped by encoder window: one batch per group."""
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault((window or self.window).mel_frames(min(n, WINDOW_SECONDS * SAMPLE_RATE)), []).append(i)
        return groups

    def encode(self, audio: np.ndarray | list[np.ndarray], window: WindowPolicy | None = None):
        """The encoder pass (a ctranslate2.StorageView [B, window frames, d]); reuse it for decoding.
        A list must share one window size (see `window_groups`)."""
        batch = [audio] if isinstance(audio, np.ndarray) else list(audio)
        mels = [self.mel(a, window) for a in batch]
        if len({m.shape[-1] for m in mels}) > 1:
            raise ValueError("encode(): a batch must share one encoder window; group it with window_groups()")
        return self.whisper.encode(np.stack(mels))

    def frames(self, audio: np.ndarray | None = None, *, encoder_output=None,
               num_samples: int | None = None) -> np.ndarray:
        """Encoder frames trimmed to the utterance: from audio, or from an encoder output computed
        elsewhere (then `num_samples` says how long the utterance was)."""
        if encoder_output is None:
            if audio is None:
                raise ValueError("frames() needs audio or an encoder_output")
            encoder_output = self.encode(audio)
            num_samples = len(audio)
        elif num_samples is None:
            raise ValueError("frames(encoder_output=...) also needs num_samples")
        out = np.asarray(encoder_output, dtype=np.float32)  # StorageView on CPU supports the buffer protocol
        if out.ndim == 3:
            out = out[0]
        return np.ascontiguousarray(out[: encoder_frames_for(num_samples)])

    def frames_of_batch(self, encoder_output, lengths: list[int]) -> list[np.ndarray]:
        """Per-utterance frames from one batched encoder output (utterances of `lengths` samples)."""
        out = np.asarray(encoder_output, dtype=np.float32)
        return [np.ascontiguousarray(out[i, : encoder_frames_for(n)]) for i, n in enumerate(lengths)]

    def frames_batch(self, audios: list[np.ndarray], window: WindowPolicy | None = None) -> list[np.ndarray]:
        """Batched encoding for feature caching: one encoder call per window size, results in input order."""
        result: list[np.ndarray | None] = [None] * len(audios)
        for idx in self.window_groups([len(a) for a in audios], window).values():
            frames = self.frames_of_batch(self.encode([audios[i] for i in idx], window), [len(audios[i]) for i in idx])
            for j, i in enumerate(idx):
                result[i] = frames[j]
        return result
