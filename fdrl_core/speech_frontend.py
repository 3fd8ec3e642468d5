"""Speech frames for FDRL from the Whisper encoder (CTranslate2), the same pass the recogniser uses.

The run-time's ASR encodes each utterance once; `frames(encoder_output=...)` turns that output into
FDRL's input, so emotion costs no second acoustic pass. Training features go through the same code.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fdrl_core.assets import whisper_model_dir
from fdrl_core.audio import SAMPLE_RATE

HOP = 160  # mel hop at 16 kHz
FRAME_SAMPLES = 2 * HOP  # the encoder's conv stride halves the mel rate: 50 frames/s
WINDOW_SECONDS = 30


def encoder_frames_for(num_samples: int) -> int:
    """How many encoder frames cover `num_samples` of real audio (the rest of the window is padding)."""
    return int(min(WINDOW_SECONDS * SAMPLE_RATE // FRAME_SAMPLES, max(1, math.ceil(num_samples / FRAME_SAMPLES))))


def encoder_output_to_host(output) -> np.ndarray:
    """A float32 numpy array from a Whisper encoder output, wherever CTranslate2 left it.

    With one GPU, faster-whisper keeps the encoder output on the device (it moves it to the CPU only
    with several device indices), and a CUDA StorageView has no array interface: np.asarray fails.
    float16/bfloat16 outputs (GPU compute types) become float32 on the way.
    """
    if isinstance(output, np.ndarray):
        return output.astype(np.float32, copy=False)
    device = getattr(output, "device", "cpu")
    dtype = getattr(getattr(output, "dtype", None), "name", "float32")
    if device != "cpu" or dtype not in ("float32", "float16"):
        import ctranslate2

        if dtype not in ("float32", "float16"):  # bfloat16 has no numpy typestr
            output = output.to(ctranslate2.DataType.float32)
        if device != "cpu":
            output = output.to_device(ctranslate2.Device.cpu)
    return np.asarray(output, dtype=np.float32)


class SpeechFrontend:
    """Whisper encoder frames [T, d] (d = 384 for tiny.en) for one utterance of up to 30 s."""

    def __init__(self, model_path: str | Path | None = None, *, whisper=None, device: str = "cpu",
                 compute_type: str = "int8", cpu_threads: int = 0):
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

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features padded or cut to one 30 s window, [n_mels, 3000]."""
        fe = self.whisper.feature_extractor
        audio = np.asarray(audio, dtype=np.float32)[: WINDOW_SECONDS * SAMPLE_RATE]
        feats = fe(audio)
        width = fe.nb_max_frames
        if feats.shape[-1] < width:
            feats = np.pad(feats, ((0, 0), (0, width - feats.shape[-1])))
        return np.ascontiguousarray(feats[:, :width], dtype=np.float32)

    def encode(self, audio: np.ndarray | list[np.ndarray]):
        """The encoder pass (a ctranslate2.StorageView [B, 1500, d]); reuse it for decoding."""
        batch = [audio] if isinstance(audio, np.ndarray) else list(audio)
        return self.whisper.encode(np.stack([self.mel(a) for a in batch]))

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
        out = encoder_output_to_host(encoder_output)
        if out.ndim == 3:
            out = out[0]
        return np.ascontiguousarray(out[: encoder_frames_for(num_samples)])

    def frames_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Batched encoding for feature caching: one call, several utterances."""
        out = encoder_output_to_host(self.encode(audios))
        return [np.ascontiguousarray(out[i, : encoder_frames_for(len(a))]) for i, a in enumerate(audios)]
