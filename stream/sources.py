"""Audio sources: microphone, file replay, bundled demo -> 16 kHz mono int16 frames of 10/20/30 ms.

Every source has a producer (PortAudio callback or a reader thread) that only copies audio into a bounded
queue, and a consumer side (`frames()`) that resamples (soxr, streaming) and cuts it into fixed frames.
The producer of a live source never blocks: when the consumer falls behind, blocks are dropped and
counted, so the device never stalls. A file played as fast as possible is not live, so it blocks instead
and loses nothing. Files are read in blocks, so memory does not grow with their length.

Every call into the audio driver has a deadline (`call_with_deadline`): a frozen audio server (PulseAudio
stopped with SIGSTOP, a wedged USB device) cannot hang the process; the call is abandoned on a daemon
thread, `driver_hung` is set and the caller exits without touching the driver again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdrl_core.audio import SAMPLE_RATE, AudioError, AudioFile, to_int16, to_mono_float
from fdrl_core.cli import InputError

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_WAV = DEMO_DIR / "demo.wav"
FALLBACK_RATES = (48000, 44100, 32000, 22050, 96000, 8000)
DRIVER_TIMEOUT_S = 1.5  # stop/close of a stream (normally milliseconds)
DRIVER_OPEN_TIMEOUT_S = 10.0  # loading PortAudio (it enumerates every device) and opening a stream


class SourceError(InputError, RuntimeError):
    """An audio source that cannot be opened or stopped delivering (one line, shown to the user)."""


class DriverTimeout(SourceError):
    """The audio driver did not return within its deadline; the call was abandoned."""


driver_hung = threading.Event()  # set once any driver call was abandoned: never call the driver again


def call_with_deadline(fn: Callable, timeout: float, what: str):
    """Run `fn()` on a daemon thread and wait at most `timeout` s. A call that does not return is
    abandoned (it cannot be cancelled) and DriverTimeout is raised; the waiting itself stays
    interruptible, so signal handlers keep running."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name=f"driver: {what}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        driver_hung.set()
        raise DriverTimeout(f"the audio driver did not return from {what} within {timeout:g} s "
                            "(audio server frozen or device wedged?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


@dataclass
class Frame:
    """`samples` int16 at 16 kHz; `start` is the index of its first sample on the stream's audio clock."""
    samples: np.ndarray
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


class StreamResampler:
    """soxr's streaming resampler (high quality) block by block; the output equals one `soxr.resample`
    call over the whole signal, and the state it keeps is a filter's length, whatever the stream's."""

    def __init__(self, sr_in: int, sr_out: int = SAMPLE_RATE):
        import soxr

        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self.rs = soxr.ResampleStream(self.sr_in, self.sr_out, 1, dtype="float32", quality="HQ")
        self.n_in = 0
        self.n_out = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.n_in += len(x)
        y = self.rs.resample_chunk(x)
        self.n_out += len(y)
        return y

    def flush(self) -> np.ndarray:
        y = self.rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self.n_out += len(y)
        return y


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
        self.dropped_blocks = 0  # blocks the producer had to throw away (the consumer fell behind)
        self.overflows = 0  # input overflows the driver reported (audio lost before it reached us)
        self.warnings: list[str] = []  # worth telling the user, not worth stopping for (a truncated file)
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
        """Stop producing; `frames()` still returns what was already captured, then ends. A source that is
        not live (a file read ahead of the pipeline) drops what it read ahead: nobody heard it yet, and
        working through it would only delay the stop."""
        self.stopping.set()
        if not self.live:
            try:
                while True:
                    self.q.get_nowait()
            except queue.Empty:
                pass

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
    """A WAV/FLAC file (any rate/channels), looped `loop` times on one audio clock, read block by block.

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
        self.file = AudioFile(self.path)  # checks the file now: AudioError with a one-line message
        self.warnings = self.file.warnings
        self.rate = self.file.rate  # frames() resamples to 16 kHz as the blocks arrive
        self.duration = self.file.duration
        self._thread: threading.Thread | None = None

    def _block_frames(self) -> int:
        """Paced: one frame's worth per block, like a sound card. Otherwise bigger reads (fewer calls)."""
        per_frame = max(1, round(self.rate * self.frame_samples / SAMPLE_RATE))
        return per_frame if self.realtime else per_frame * 32

    def start(self) -> None:
        block = self._block_frames()
        self._make_queue(block, self.rate)
        self._thread = threading.Thread(target=self._produce, name="file-source", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        block = self._block_frames()
        t0 = time.monotonic()
        sent = 0
        try:
            for _ in range(self.loop):
                for x in self.file.blocks(block):
                    if self.stopping.is_set():
                        return
                    if self.realtime:  # sleep until this block would have been captured
                        due = t0 + (sent + len(x)) / self.rate
                        delay = due - time.monotonic()
                        if delay > 0 and self.stopping.wait(delay):
                            return
                    self._offer(x)
                    sent += len(x)
        except AudioError as e:  # decode error in the middle of the file: the run ends with it
            self.error = str(e)
        finally:
            self.stopping.set()
            try:
                self.q.put(None, timeout=1.0)
            except queue.Full:
                pass  # the consumer sees `stopping` and ends once the queue is empty

    def describe(self) -> str:
        loop = f" x{self.loop}" if self.loop > 1 else ""
        pace = "real time" if self.realtime else "as fast as possible"
        rate = "" if self.rate == SAMPLE_RATE else f", {self.rate} Hz"
        return f"file {self.path} ({self.duration:.1f} s{rate}{loop}, {pace})"


class DemoSource(FileSource):
    kind = "demo"

    def __init__(self, realtime: bool = False, loop: int = 1, frame_ms: int = 30, queue_seconds: float = 5.0):
        if not DEMO_WAV.is_file():
            raise SourceError(f"the bundled demo recording is missing ({DEMO_WAV}); "
                              "run scripts/make_demo_audio.py to create it")
        super().__init__(DEMO_WAV, realtime, loop, frame_ms, queue_seconds)

    def describe(self) -> str:
        return "demo " + super().describe().removeprefix("file ")


class _QuietStderr:
    """PortAudio and ALSA print their own diagnostics on fd 2 while they probe devices ("ALSA lib
    pcm.c: ... Unknown PCM"); we report one line ourselves, so their lines are kept out of the way.
    FDRL_DEBUG=1 (or --debug) lets them through.

    Only the C libraries are silenced: Python's sys.stderr is first moved onto its own copy of fd 2, so
    a driver call that hangs inside this block (a frozen audio server; the call is abandoned and the
    block never exits) cannot swallow the error line, or anything else we print afterwards."""

    lock = threading.Lock()
    depth = 0

    def __enter__(self):
        import os

        self.fd = None
        if os.environ.get("FDRL_DEBUG", "") not in ("", "0"):
            return self
        with self.lock:
            try:
                _own_python_stderr()
                if _QuietStderr.depth == 0:
                    self.fd = os.dup(2)
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 2)
                    os.close(devnull)
                    _QuietStderr.depth = 1
            except OSError:
                self.fd = None
        return self

    def __exit__(self, *exc):
        import os

        if self.fd is not None:
            with self.lock:
                os.dup2(self.fd, 2)
                os.close(self.fd)
                _QuietStderr.depth = 0
        return False


def _own_python_stderr() -> None:
    """Point sys.stderr at a duplicate of fd 2 (once), so redirecting fd 2 only affects C code."""
    import os
    import sys

    err = sys.stderr
    if err is None or err is not sys.__stderr__ or getattr(_own_python_stderr, "done", False):
        return  # closed, or replaced already (pytest's capture, or by us)
    try:
        if err.fileno() != 2:
            return
        err.flush()
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=err.encoding, errors=err.errors)
    except (OSError, ValueError, AttributeError):
        return
    _own_python_stderr.done = True


def _import_sounddevice():
    with _QuietStderr():
        import sounddevice

        return sounddevice


def _sounddevice():
    """sounddevice, loaded with a deadline: loading PortAudio probes every device through the audio
    server, which hangs forever when the server is frozen."""
    try:
        return call_with_deadline(_import_sounddevice, DRIVER_OPEN_TIMEOUT_S, "loading PortAudio")
    except DriverTimeout as e:
        raise SourceError(f"cannot use the microphone: {e}") from None
    except OSError as e:  # PortAudio shared library missing
        raise SourceError(f"cannot use the microphone: {e} (install libportaudio2)") from None
    except ImportError:
        raise SourceError("cannot use the microphone: the 'sounddevice' package is not installed "
                          "(pip install 'fdrl-stream[mic]')") from None


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
        devices = call_with_deadline(sd.query_devices, DRIVER_OPEN_TIMEOUT_S, "listing devices")
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
        self.rate, self.channels = call_with_deadline(self._negotiate, DRIVER_OPEN_TIMEOUT_S,
                                                      "querying the input device")
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
        def open_and_start():
            with _QuietStderr():
                stream = sd.InputStream(device=self.device, samplerate=self.rate, channels=self.channels,
                                        dtype="int16", blocksize=block, callback=self._callback)
                self.stream = stream
                self.last_block = time.monotonic()
                stream.start()

        try:
            call_with_deadline(open_and_start, DRIVER_OPEN_TIMEOUT_S, "opening the microphone")
        except DriverTimeout as e:
            raise SourceError(f"cannot open microphone {self.device_name!r}: {e}") from None
        except (sd.PortAudioError, ValueError) as e:
            raise SourceError(f"cannot open microphone {self.device_name!r} at {self.rate} Hz: {e} "
                              "(busy or unplugged?)") from None

    def _alive(self) -> bool:
        if self.stopping.is_set():
            return False
        # PortAudio noticed the device went away (`active` only reads a flag; it does not wait on the server)
        gone = self.stream is not None and not self.stream.active
        stalled = time.monotonic() - self.last_block > self.stall_s  # or the callbacks silently stopped
        if gone or stalled:
            self.error = f"microphone {self.device_name!r} stopped delivering audio (unplugged or server gone?)"
            self.stopping.set()
            return False
        return True

    def _driver(self, method: str) -> None:
        """stream.stop()/close() with a deadline; after one abandoned call the driver is left alone."""
        stream = self.stream
        if stream is None or driver_hung.is_set():
            return
        try:
            call_with_deadline(getattr(stream, method), DRIVER_TIMEOUT_S, f"stream.{method}()")
        except DriverTimeout as e:
            if self.error is None:
                self.error = f"microphone {self.device_name!r}: {e}"
        except self.sd.PortAudioError:
            pass

    def stop(self) -> None:
        super().stop()
        self._driver("stop")

    def close(self) -> None:
        self.stop()
        self._driver("close")
        self.stream = None

    def describe(self) -> str:
        rs = "" if self.rate == SAMPLE_RATE else f", resampled {self.rate} -> {SAMPLE_RATE} Hz"
        return f"microphone {self.device_name!r} ({self.rate} Hz, {self.channels} ch{rs})"


def stop_source(source: AudioSource, method: str = "stop", timeout: float = DRIVER_TIMEOUT_S + 0.5) -> bool:
    """source.stop() or source.close() that cannot hang the caller; False when it was abandoned."""
    try:
        call_with_deadline(getattr(source, method), timeout, f"{source.kind} {method}()")
        return True
    except DriverTimeout:
        source.stopping.set()  # frames() ends with what was already captured
        if source.error is None:
            source.error = f"{source.describe()}: {method}() did not return within {timeout:g} s; abandoned"
        return False


class SourceRelease:
    """source.stop() then source.close() on a daemon thread, started once (by a stop request or at the
    end of the run). `wait()` gives it what is left of one deadline counted from the start, so a frozen
    driver costs at most `timeout` seconds in total, overlapping whatever else the stop has to finish."""

    def __init__(self, source: AudioSource, timeout: float = DRIVER_TIMEOUT_S + 0.5):
        self.source = source
        self.timeout = timeout
        self.thread: threading.Thread | None = None
        self.deadline = 0.0
        self.lock = threading.Lock()

    def _release(self) -> None:
        try:
            self.source.stop()
            self.source.close()
        except Exception as e:  # reported by wait(); a failing driver must not take the stop down
            self.source.error = self.source.error or f"{self.source.describe()}: closing failed: {e}"

    def start(self) -> None:
        with self.lock:
            if self.thread is not None:
                return
            self.source.stopping.set()  # frames() ends with what was captured, whatever the driver does
            self.deadline = time.monotonic() + self.timeout
            self.thread = threading.Thread(target=self._release, name="source-release", daemon=True)
            self.thread.start()

    def wait(self) -> bool:
        """True when the source stopped and closed in time; False when it was abandoned."""
        self.start()
        self.thread.join(max(0.0, self.deadline - time.monotonic()))
        if self.thread.is_alive():
            driver_hung.set()
            if self.source.error is None:
                self.source.error = (f"{self.source.describe()}: stop()/close() did not return within "
                                      f"{self.timeout:g} s; abandoned")
            return False
        return True


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


__all__ = ["AudioError", "AudioSource", "DemoSource", "DriverTimeout", "FileSource", "Frame", "MicSource",
           "SourceError", "SourceRelease", "StreamResampler", "call_with_deadline", "driver_hung", "list_devices",
           "open_source", "stop_source"]
