"""What every peer driver shares: the job, the paced feeder, the JSON-lines event stream to the bench.

Events (one JSON object per line on stdout; timestamps are time.monotonic(), which is system-wide on
Linux, so the bench compares them with its own clock):
  {"kind": "ready", "t": ..., "load_s": ...}                the peer is loaded and warmed up
  {"kind": "origin", "t": ...}                              wall time of audio sample 0 (feeding starts)
  {"kind": "partial" | "final", "t": ..., "text": "..."}    the peer's provisional / committed text; a peer
      that commits piece by piece (LocalAgreement) adds "start"/"end", the piece's audio span in seconds
  {"kind": "done", "t": ..., "audio_s": ..., "cpu_s": ..., "fed_late_blocks": n}
  {"kind": "error", "message": "..."}                       the peer failed; the bench reports it
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
import wave

import numpy as np

_lock = threading.Lock()
_out = sys.stdout


def claim_stdout() -> None:
    """Peers print banners and progress to stdout: keep the real stdout for events, send the rest to stderr."""
    global _out
    _out = sys.stdout
    sys.stdout = sys.stderr


def emit(kind: str, **data) -> None:
    data.setdefault("t", time.monotonic())
    with _lock:
        _out.write(json.dumps({"kind": kind, **data}) + "\n")
        _out.flush()


def load_job() -> dict:
    with open(sys.argv[1]) as f:
        return json.load(f)


def read_wav_int16(path: str) -> np.ndarray:
    """16 kHz mono 16-bit PCM, as the bench writes it."""
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit PCM")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


def feed_paced(pcm: np.ndarray, feed, block_ms: int = 30, sample_rate: int = 16000) -> dict:
    """Call feed(block) for each block at the time a microphone would have delivered it.

    Emits the "origin" event (wall time of sample 0); returns the CPU used while feeding and how many
    blocks were fed late (the peer's feed call blocked longer than real time)."""
    block = sample_rate * block_ms // 1000
    cpu0 = cpu_s()
    t0 = time.monotonic()
    emit("origin", t=t0)
    late = 0
    for i in range(0, len(pcm), block):
        due = t0 + (i + block) / sample_rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -block_ms / 1000:
            late += 1
        feed(pcm[i:i + block])
    return {"cpu0": cpu0, "t0": t0, "fed_late_blocks": late, "audio_s": len(pcm) / sample_rate}


def run(main) -> None:
    """Run a driver's main(job); any failure becomes one "error" event and exit code 1."""
    claim_stdout()
    try:
        main(load_job())
    except BaseException as e:  # noqa: BLE001 - reported to the bench, which says why the peer could not run
        emit("error", message=f"{type(e).__name__}: {e}".splitlines()[0][:500])
        sys.stderr.flush()
        import os

        os._exit(1)
    sys.stderr.flush()
    import os

    os._exit(0)  # peers leave non-daemon threads behind; the run is over
