"""Audio in the one format every stage uses: float32 mono in [-1, 1] at 16 kHz.

Files are opened through `AudioFile`, which checks them once (exists, is a file, decodes, no NaN/Inf
samples, a WAV header that matches the data) and then reads them in blocks, so a long recording never
has to fit in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from math import gcd
from pathlib import Path

import numpy as np

from fdrl_core.cli import InputError

SAMPLE_RATE = 16000
BLOCK_FRAMES = 1 << 16  # frames per read when scanning or streaming a file (~1.4 s at 48 kHz)


class AudioError(InputError):
    """An audio file that cannot be read or decoded (one line naming the file)."""


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


def _wav_declared_frames(path: Path, block_align: int) -> int | None:
    """Frames the RIFF/WAVE header promises in its data chunk (None: not a plain RIFF WAV, or a streaming
    writer's placeholder size)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            while True:
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"data":
                    if size in (0, 0xFFFFFFFF) or block_align <= 0:
                        return None
                    return size // block_align
                f.seek(size + (size & 1), 1)
    except OSError:
        return None


class AudioFile:
    """An audio file checked once and then read block by block (float32 mono at its own rate).

    `warnings` holds what the user should hear about but that does not stop a run (a truncated file)."""

    def __init__(self, path: str | Path):
        import soundfile as sf

        self.path = path = Path(path)
        if path.is_dir():
            raise AudioError(f"{path} is a directory, not an audio file")
        if not path.exists():
            raise AudioError(f"audio file not found: {path}")
        if not path.is_file():  # a FIFO would block the open forever; devices and pipes cannot be re-read
            raise AudioError(f"{path} is not a regular file (a pipe or device); give a WAV/FLAC/OGG/MP3 file")
        if path.stat().st_size == 0:
            raise AudioError(f"audio file {path} is empty (0 bytes)")
        try:
            info = sf.info(str(path))
        except PermissionError:
            raise AudioError(f"cannot read audio file {path}: permission denied") from None
        except (RuntimeError, sf.LibsndfileError, OSError) as e:
            raise AudioError(f"cannot read audio file {path}: {_sndfile_reason(e)}") from None
        self.rate, self.channels, self.frames = int(info.samplerate), int(info.channels), int(info.frames)
        self.subtype, self.format = info.subtype, info.format
        if self.frames <= 0:
            raise AudioError(f"audio file {path} contains no samples")
        if self.rate <= 0:
            raise AudioError(f"audio file {path} has an invalid sample rate ({self.rate} Hz)")
        self.warnings: list[str] = []
        if self.format in ("WAV", "WAVEX"):
            bytes_per_frame = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
                               "DOUBLE": 8, "ULAW": 1, "ALAW": 1}.get(self.subtype)
            declared = _wav_declared_frames(path, (bytes_per_frame or 0) * self.channels)
            if declared is not None and declared > self.frames:
                self.warnings.append(f"{path} is truncated: its header says {declared / self.rate:.1f} s, but "
                                     f"only {self.frames / self.rate:.1f} s of audio are present; using those")
        if self.subtype in ("FLOAT", "DOUBLE"):  # only float encodings can hold NaN/Inf
            for _ in self._read(BLOCK_FRAMES, check=True):
                pass

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    def _read(self, block_frames: int, check: bool = True) -> Iterator[tuple[int, np.ndarray]]:
        """(first frame, [n, channels] float32) blocks; NaN/Inf name the file and time. A decode error part
        way through (a truncated FLAC) keeps what decodes before it and leaves a warning."""
        import soundfile as sf

        pos, small = 0, min(block_frames, 1024)
        size = block_frames
        error = None
        try:
            f = sf.SoundFile(str(self.path))
        except (RuntimeError, sf.LibsndfileError) as e:
            raise AudioError(f"cannot read audio file {self.path}: {_sndfile_reason(e)}") from None
        with f:
            while True:
                try:
                    block = f.read(size, dtype="float32", always_2d=True)
                except (RuntimeError, sf.LibsndfileError) as e:
                    error = error or _sndfile_reason(e)  # the first reason is the real one
                    if size > small:  # go back and close in on the damage in small steps
                        size = small
                        try:
                            f.seek(pos)
                            continue
                        except (RuntimeError, sf.LibsndfileError):
                            pass
                    break
                if len(block) == 0:
                    error = None  # a retry in small steps read to the end: nothing was wrong after all
                    break
                if check and not np.isfinite(block).all():
                    bad = pos + int(np.argmax(~np.isfinite(block).all(axis=1)))
                    raise AudioError(f"{self.path}: NaN/Inf samples at {bad / self.rate:.2f} s; the file is "
                                     "damaged (re-export it, or convert it to 16-bit PCM)")
                yield pos, block
                pos += len(block)
        if error is not None:
            if pos == 0:
                raise AudioError(f"cannot read audio file {self.path}: {error}")
            self.warnings.append(f"{self.path} is damaged or truncated at {pos / self.rate:.1f} s ({error}); "
                                 f"used the {pos / self.rate:.1f} s before it (the header says "
                                 f"{self.frames / self.rate:.1f} s)")
        elif pos < self.frames:
            self.warnings.append(f"{self.path} ended at {pos / self.rate:.1f} s although its header says "
                                 f"{self.frames / self.rate:.1f} s (truncated?)")

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the file's own rate (`self.rate`)."""
        for _, block in self._read(block_frames, check=self.subtype in ("FLOAT", "DOUBLE")):
            yield to_mono_float(block) if self.channels > 1 else block[:, 0]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _sndfile_reason(e: BaseException) -> str:
    """libsndfile's message without its own "Error opening '<path>': " prefix (we name the file already)."""
    text = _first_line(e)
    if text.startswith("Error opening ") and "': " in text:
        text = text.split("': ", 1)[1]
    text = text.removeprefix("Error : ").strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else text


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read WAV/FLAC/OGG (anything libsndfile reads), downmix and resample to `sample_rate` (whole file:
    for utterance-sized clips; streams use `AudioFile.blocks`). Warnings (a truncated file) are issued
    through `warnings.warn`."""
    import warnings

    f = AudioFile(path)
    data = np.concatenate(list(f.blocks()))
    for w in f.warnings:
        warnings.warn(w, stacklevel=2)
    return resample(data, f.rate, sample_rate)


def to_int16(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 with rounding (no dither: identical input gives identical bytes)."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
