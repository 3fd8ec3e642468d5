"""Audio sources: microphone, file replay, bundled demo -> 16 kHz mono int16 frames of 10/20/30 ms.

Every source has a producer (PortAudio callback or a reader thread) that only copies audio into a bounded
queue, and a consumer side (`frames()`) that resamples and cuts it into fixed frames. The producer of a
live source never blocks: when the consumer falls behind, blocks are dropped and counted, so the device
never stalls. A file played as fast as possible is not live, so it blocks instead and loses nothing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from math import ceil, gcd
from pathlib import Path

import numpy as np

from fdrl_core.audio import SAMPLE_RATE, AudioError, load_audio, to_int16, to_mono_float

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_WAV = DEMO_DIR / "demo.wav"
FALLBACK_RATES = (48000, 44100, 32000, 22050, 96000, 8000)


class SourceError(RuntimeError):
    """An audio source that cannot be opened or stopped delivering (one line, shown to the user)."""


@dataclass
class Frame:
    """`samples` int16 at 16 kHz; `start` is the index of its first sample on the stream's audio clock."""
    samples: np.ndarray
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


class StreamResampler:
    """Polyphase resampling block by block, identical (to float rounding) to one `resample_poly` call
    over the whole signal: each block is filtered with enough history on the left, and outputs are only
    emitted once the filter has seen all the input they depend on."""

    def __init__(self, sr_in: int, sr_out: int = SAMPLE_RATE):
        g = gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g
        # resample_poly's default filter: half-length 10 * max(up, down) taps at the upsampled rate
        self.half = ceil(10 * max(self.up, self.down) / self.up) + 1  # in input samples
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_start = 0  # global input index of buf[0]; kept a multiple of `down` so the grids align
        self.n_in = 0
        self.n_out = 0

    def _run(self, final: bool) -> np.ndarray:
        from scipy.signal import resample_poly

        if self.up == self.down == 1:
            out, self.buf = self.buf, self.buf[:0]
            self.n_out += len(out)
            return out
        if len(self.buf) == 0:
            return np.zeros(0, dtype=np.float32)
        y = resample_poly(self.buf, self.up, self.down)
        first = self.buf_start * self.up // self.down  # global output index of y[0]
        if final:
            last = ceil(self.n_in * self.up / self.down)  # total outputs of the one-shot call
        else:  # outputs whose filter support lies inside what has arrived
            last = max(0, (self.n_in - self.half) * self.up // self.down)
        lo, hi = self.n_out - first, min(len(y), last - first)
        out = y[lo:hi].astype(np.float32) if hi > lo else np.zeros(0, dtype=np.float32)
        self.n_out += len(out)
        # drop history the next outputs no longer need (keep `half` samples before the next output)
        keep_from = (self.n_out * self.down // self.up) - self.half
        keep_from = max(self.buf_start, (keep_from // self.down) * self.down)
        self.buf = self.buf[keep_from - self.buf_start:]
        self.buf_start = keep_from
        return out

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        self.buf = np.concatenate([self.buf, x])
        self.n_in += len(x)
        return self._run(final=False)

    def flush(self) -> np.ndarray:
        return self._run(final=True)


class AudioSource:
    """Base: a producer fills `self.q` with (float32 or int16 block, device rate); `frames()` consumes."""

    kind = "source"
    live = True  # a live source drops on overflow; a non-live one blocks (back-pressure)

    def __init__(self, frame_ms: int = 30, queue_seconds: float = 5.0):
        if frame_ms not in (10, 20, 30):
            raise ValueError("frame_ms must be 10, 20 or 30 (webrtcvad frame sizes)")
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000
        self.queue_seconds = queue_seconds
        self.q: queue.Queue = queue.Queue(maxsize=1)  # resized in start()
        self.dropped_frames = 0  # in frames of `frame_ms` at 16 kHz
        self.dropped_blocks = 0
        self.stopping = threading.Event()
        self.error: str | None = None
        self.rate = SAMPLE_RATE
        self.samples_out = 0

    def _make_queue(self, block_samples: int, rate: int) -> None:
        blocks = max(4, int(self.queue_seconds * rate / max(1, block_samples)))
        self.q = queue.Queue(maxsize=blocks)

    def _offer(self, block: np.ndarray) -> None:
        """Producer side: a live source never waits."""
        if self.live:
            try:
                self.q.put_nowait(block)
            except queue.Full:
                self.dropped_blocks += 1
                self.dropped_frames += max(1, round(len(block) * SAMPLE_RATE / self.rate / self.frame_samples))
        else:
            while not self.stopping.is_set():
                try:
                    self.q.put(block, timeout=0.1)
                    return
                except queue.Full:
                    continue

    def queue_depth(self) -> int:
        return self.q.qsize()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop producing; `frames()` still returns what was already captured, then ends."""
        self.stopping.set()

    def close(self) -> None:
        self.stop()

    def _alive(self) -> bool:
        return not self.stopping.is_set()

    def frames(self) -> Iterator[Frame]:
        """16 kHz int16 frames of exactly `frame_ms`; the last partial frame is zero-padded."""
        rs = StreamResampler(self.rate) if self.rate != SAMPLE_RATE else None
        pending = np.zeros(0, dtype=np.int16)
        while True:
            try:
                block = self.q.get(timeout=0.2)
            except queue.Empty:
                if self._alive():
                    continue
                if self.q.empty():
                    break
                continue
            if block is None:  # end of input
                break
            if rs is not None:
                block = to_int16(rs.process(to_mono_float(block)))
            elif block.dtype != np.int16:
                block = to_int16(block)
            pending = np.concatenate([pending, block.reshape(-1)])
            while len(pending) >= self.frame_samples:
                yield self._frame(pending[: self.frame_samples])
                pending = pending[self.frame_samples:]
        if rs is not None:
            pending = np.concatenate([pending, to_int16(rs.flush())])
        while len(pending) > 0:
            chunk = pending[: self.frame_samples]
            pending = pending[self.frame_samples:]
            if len(chunk) < self.frame_samples:
                chunk = np.concatenate([chunk, np.zeros(self.frame_samples - len(chunk), dtype=np.int16)])
            yield self._frame(chunk)
        if self.error:
            raise SourceError(self.error)

    def _frame(self, samples: np.ndarray) -> Frame:
        f = Frame(np.ascontiguousarray(samples), self.samples_out)
        self.samples_out += len(samples)
        return f

    def describe(self) -> str:
        return self.kind


class FileSource(AudioSource):
    """A WAV/FLAC file (any rate/channels: load_audio converts), looped `loop` times on one audio clock.

    realtime=False: as fast as the pipeline consumes (blocking, nothing lost).
    realtime=True: paced like a microphone (never blocks; drops counted like a live device)."""

    kind = "file"

    def __init__(self, path: str | Path, realtime: bool = False, loop: int = 1, frame_ms: int = 30,
                 queue_seconds: float = 5.0):
        super().__init__(frame_ms, queue_seconds)
        self.path = Path(path)
        self.realtime = realtime
        self.live = realtime
        self.loop = max(1, int(loop))
        self.audio = load_audio(self.path)  # raises AudioError with a one-line message
        self.duration = len(self.audio) / SAMPLE_RATE
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        block = self.frame_samples
        self._make_queue(block, SAMPLE_RATE)
        self._thread = threading.Thread(target=self._produce, name="file-source", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        pcm = to_int16(self.audio)
        block = self.frame_samples
        t0 = time.monotonic()
        sent = 0
        try:
            for _ in range(self.loop):
                for i in range(0, len(pcm), block):
                    if self.stopping.is_set():
                        return
                    if self.realtime:  # sleep until this block would have been captured
                        due = t0 + (sent + block) / SAMPLE_RATE
                        delay = due - time.monotonic()
                        if delay > 0:
                            if self.stopping.wait(delay):
                                return
                    self._offer(pcm[i:i + block])
                    sent += block
        finally:
            self.stopping.set()
            try:
                self.q.put(None, timeout=1.0)
            except queue.Full:
                pass  # the consumer sees `stopping` and ends once the queue is empty

    def describe(self) -> str:
        loop = f" x{self.loop}" if self.loop > 1 else ""
        pace = "real time" if self.realtime else "as fast as possible"
        return f"file {self.path} ({self.duration:.1f} s{loop}, {pace})"


class DemoSource(FileSource):
    kind = "demo"

    def __init__(self, realtime: bool = False, loop: int = 1, frame_ms: int = 30, queue_seconds: float = 5.0):
        if not DEMO_WAV.is_file():
            raise SourceError(f"the bundled demo recording is missing ({DEMO_WAV}); "
                              "run scripts/make_demo_audio.py to create it")
        super().__init__(DEMO_WAV, realtime, loop, frame_ms, queue_seconds)

    def describe(self) -> str:
        return "demo " + super().describe().removeprefix("file ")


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio shared library missing
        raise SourceError(f"cannot use the microphone: {e} (install libportaudio2)") from None
    except ImportError:
        raise SourceError("cannot use the microphone: the 'sounddevice' package is not installed "
                          "(pip install 'fdrl-stream[mic]')") from None
    return sd


def _device_arg(device: str | int | None):
    if device is None or device == "":
        return None
    try:
        return int(device)
    except (TypeError, ValueError):
        return str(device)


def list_devices() -> str:
    """Input devices as PortAudio sees them (what --device accepts: index or name)."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as e:
        raise SourceError(f"cannot list audio devices: {e}") from None
    lines = []
    default_in = sd.default.device[0] if isinstance(sd.default.device, (list, tuple)) else sd.default.device
    for i, d in enumerate(devices):
        if d.get("max_input_channels", 0) > 0:
            mark = "*" if i == default_in else " "
            lines.append(f"{mark} {i:3d}  {d['name']}  ({d['max_input_channels']} ch, "
                         f"default {d['default_samplerate']:.0f} Hz)")
    if not lines:
        return "no input devices found"
    return "\n".join(["input devices (* = default):", *lines])


class MicSource(AudioSource):
    """A PortAudio input device via sounddevice. Opens at 16 kHz when the device accepts it, otherwise at
    the device's default rate (or 48/44.1 kHz) and resamples on the consumer side."""

    kind = "mic"
    live = True

    def __init__(self, device: str | int | None = None, frame_ms: int = 30, queue_seconds: float = 5.0):
        super().__init__(frame_ms, queue_seconds)
        self.sd = _sounddevice()
        self.device = _device_arg(device)
        self.stream = None
        self.channels = 1
        self.device_name = "default"
        self.rate, self.channels = self._negotiate()
        self.overflows = 0
        self.stall_s = 3.0  # no audio for this long while running: the device is gone
        self.last_block = time.monotonic()

    def _negotiate(self) -> tuple[int, int]:
        """Pick a rate and channel count the device accepts, without opening it yet."""
        sd = self.sd
        try:
            info = sd.query_devices(self.device, "input")
        except (sd.PortAudioError, ValueError) as e:
            what = f"input device {self.device!r}" if self.device is not None else "a default input device"
            raise SourceError(f"no microphone: cannot find {what} ({e}); see --list-devices") from None
        self.device_name = info["name"]
        max_ch = int(info.get("max_input_channels", 0))
        if max_ch < 1:
            raise SourceError(f"audio device {info['name']!r} has no input channels; see --list-devices")
        rates = [SAMPLE_RATE, int(info.get("default_samplerate") or 0), *FALLBACK_RATES]
        last = None
        for ch in (1, min(2, max_ch)):
            for rate in dict.fromkeys(r for r in rates if r > 0):
                try:
                    sd.check_input_settings(device=self.device, channels=ch, dtype="int16", samplerate=rate)
                    return rate, ch
                except (sd.PortAudioError, ValueError) as e:
                    last = e
        raise SourceError(f"microphone {info['name']!r} accepts none of the sample rates tried "
                          f"({', '.join(str(r) for r in dict.fromkeys(rates) if r)} Hz): {last}")

    def _callback(self, indata, frames, time_info, status) -> None:
        # PortAudio's thread: copy and hand over, nothing else (never block, never raise)
        self.last_block = time.monotonic()
        if status.input_overflow:
            self.overflows += 1
        block = indata[:, 0].copy() if self.channels == 1 else indata.mean(axis=1).astype(np.int16)
        self._offer(block)

    def start(self) -> None:
        sd = self.sd
        block = max(1, self.rate * self.frame_samples // SAMPLE_RATE)
        self._make_queue(block, self.rate)
        try:
            self.stream = sd.InputStream(device=self.device, samplerate=self.rate, channels=self.channels,
                                         dtype="int16", blocksize=block, callback=self._callback)
            self.last_block = time.monotonic()
            self.stream.start()
        except (sd.PortAudioError, ValueError) as e:
            raise SourceError(f"cannot open microphone {self.device_name!r} at {self.rate} Hz: {e} "
                              "(busy or unplugged?)") from None

    def _alive(self) -> bool:
        if self.stopping.is_set():
            return False
        gone = self.stream is not None and not self.stream.active  # PortAudio noticed the device went away
        stalled = time.monotonic() - self.last_block > self.stall_s  # or the callbacks silently stopped
        if gone or stalled:
            self.error = f"microphone {self.device_name!r} stopped delivering audio (unplugged or server gone?)"
            self.stopping.set()
            return False
        return True

    def stop(self) -> None:
        super().stop()
        if self.stream is not None:
            try:
                self.stream.stop()
            except self.sd.PortAudioError:
                pass

    def close(self) -> None:
        self.stop()
        if self.stream is not None:
            try:
                self.stream.close()
            except self.sd.PortAudioError:
                pass
            self.stream = None

    def describe(self) -> str:
        rs = "" if self.rate == SAMPLE_RATE else f", resampled {self.rate} -> {SAMPLE_RATE} Hz"
        return f"microphone {self.device_name!r} ({self.rate} Hz, {self.channels} ch{rs})"


def open_source(kind: str, *, path: str | Path | None = None, device: str | int | None = None,
                realtime: bool = False, loop: int = 1, frame_ms: int = 30,
                queue_seconds: float = 5.0) -> AudioSource:
    """The one place the CLI turns --mic/--file/--demo into a source; errors are SourceError/AudioError."""
    if kind == "mic":
        return MicSource(device, frame_ms, queue_seconds)
    if kind == "file":
        if path is None:
            raise SourceError("--file needs a path")
        return FileSource(path, realtime, loop, frame_ms, queue_seconds)
    if kind == "demo":
        return DemoSource(realtime, loop, frame_ms, queue_seconds)
    raise ValueError(f"unknown source kind {kind!r}")


__all__ = ["AudioError", "AudioSource", "DemoSource", "FileSource", "Frame", "MicSource", "SourceError",
           "StreamResampler", "list_devices", "open_source"]
