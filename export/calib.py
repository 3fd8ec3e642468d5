"""Real inputs for INT8 calibration: speech frames + token ids in the graph's layout, at a fixed shape.

`python -m export quantize` runs them through onnxruntime's calibrator to place Q/DQ nodes (explicit
quantization, what TensorRT 10 builds INT8 from). Every batch is padded or cut to (batch, speech_frames,
text_tokens); masks mark what is real. Frames come from the same SpeechFrontend the run-time uses,
tokens from the tokenizer.json shipped next to the graph.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdrl_core.speaker_norm import SPEAKER_NORMS, SpeakerNorm


class CalibrationError(ValueError):
    """Calibration data that cannot be read or is empty."""


@dataclass
class CalibItem:
    frames: np.ndarray | None  # [T, d] float32, or None when only audio is known (then `wav` is set)
    text: str
    wav: Path | None = None


def _sibling_text(path: Path) -> str:
    txt = path.with_suffix(".txt")
    return txt.read_text().strip() if txt.is_file() else ""


def find_items(source: str | Path, limit: int) -> list[CalibItem]:
    """A folder of .npy frame arrays [T, d] or .wav files (text from a sibling .txt, else none), or a
    corpus manifest (.csv/.jsonl with path and text, or a folder holding manifest.jsonl/.csv; IEMOCAP:
    write one with its paths and transcripts). Read without the training package."""
    from fdrl_core.manifest import audio_and_text, find_manifest

    src = Path(source).expanduser()
    if not src.exists():
        raise CalibrationError(f"calibration data not found: {src}")
    manifest = find_manifest(src)
    if src.is_dir() and manifest is None:
        npys = sorted(src.rglob("*.npy"))
        if npys:
            return [CalibItem(np.load(p).astype(np.float32), _sibling_text(p)) for p in npys[:limit]]
        wavs = sorted(src.rglob("*.wav"))
        if wavs:
            return [CalibItem(None, _sibling_text(p), p) for p in wavs[:limit]]
    if manifest is None:
        raise CalibrationError(f"{src}: not calibration data (expected .npy or .wav files, or a .csv/.jsonl "
                               "manifest with path and text)")
    try:
        rows = audio_and_text(manifest)
    except (ValueError, OSError) as e:
        raise CalibrationError(f"{manifest}: {e}") from None
    # spread over the corpus (labels and speakers are usually grouped in file order)
    step = max(1, len(rows) // max(1, limit))
    return [CalibItem(None, text, wav) for wav, text in rows[::step][:limit]]


def load_frames(items: list[CalibItem], whisper_model: str | None = None, progress: bool = True) -> list[CalibItem]:
    """Fill in frames for items known only by their audio (one Whisper encoder pass each)."""
    todo = [it for it in items if it.frames is None]
    if not todo:
        return items
    from tqdm import tqdm

    from fdrl_core.audio import AudioError, load_audio
    from fdrl_core.speech_frontend import SpeechFrontend

    frontend = SpeechFrontend(whisper_model)
    for it in tqdm(todo, desc="calibration features", unit="utt", disable=not progress):
        try:
            it.frames = frontend.frames(load_audio(it.wav))
        except AudioError as e:
            raise CalibrationError(f"{it.wav}: {e}") from None
    return items


def _fit(a: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut or zero-pad axis 0 to `length`; returns the array and its 0/1 int64 mask."""
    n = min(len(a), length)
    out = np.zeros((length,) + a.shape[1:], dtype=a.dtype)
    out[:n] = a[:n]
    mask = np.zeros(length, dtype=np.int64)
    mask[:n] = 1
    return out, mask


def _prepared(frames: np.ndarray, speech_norm: str) -> np.ndarray:
    frames = frames.astype(np.float32)
    return SpeakerNorm.for_mode(speech_norm).normalise(frames) if speech_norm in SPEAKER_NORMS else frames


def batches(items: list[CalibItem], tokenizer, batch: int, speech_frames: int,
            text_tokens: int, speech_norm: str = "none") -> Iterator[dict[str, np.ndarray]]:
    """Feeds {input name: array} of exactly [batch, speech_frames, d] / [batch, text_tokens]. For a
    speech_norm="speaker" model the frames are normalised as the run-time would on a stream's first
    utterance (the graph expects normalised frames; other models get them raw)."""
    if not items:
        raise CalibrationError("no calibration items")
    usable = [it for it in items if it.frames is not None and len(it.frames)]
    for start in range(0, len(usable) - batch + 1, batch):
        group = usable[start:start + batch]
        speech, smask = zip(*(_fit(_prepared(it.frames, speech_norm), speech_frames) for it in group))
        ids, amask = tokenizer([it.text for it in group])
        ids_fit, amask_fit = zip(*((_fit(i, text_tokens)[0], _fit(m, text_tokens)[0]) for i, m in zip(ids, amask)))
        yield {"speech": np.stack(speech), "speech_mask": np.stack(smask),
               "input_ids": np.stack(ids_fit).astype(np.int64), "attention_mask": np.stack(amask_fit).astype(np.int64)}
