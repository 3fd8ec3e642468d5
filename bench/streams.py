"""`python -m stream.run --file X --realtime` as separate processes, watched like a user would: one
subscriber per process, start-up until its first 'start' status, CPU and peak memory from the kernel
(wait4), dropped audio and latency from the process's own messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Receiver, free_endpoint, summary
from bench.machine import HardwarePath

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class StreamProc:
    index: int
    endpoint: str
    stream_id: str
    proc: subprocess.Popen
    receiver: Receiver
    log: object
    t_launch: float
    t_ready: float | None = None
    cpu_at_ready_s: float | None = None
    t_end: float | None = None
    returncode: int | None = None
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    extra: dict = field(default_factory=dict)


def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def _peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process. Not ru_maxrss from wait4: that also counts the pages the child shared with
    this (large) parent between fork and exec."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs, for the whole machine's utilisation over a window."""
    try:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return float(sum(vals) - idle), float(sum(vals))


def stream_command(audio: Path, endpoint: str, stream_id: str, model: str | None, backend: str,
                   hw: HardwarePath) -> list[str]:
    cmd = [sys.executable, "-m", "stream.run", "--file", str(audio), "--realtime", "--no-print",
           "--endpoint", endpoint, "--stream-id", stream_id, "--backend", backend, "--heartbeat", "1",
           "--asr-device", hw.asr_device, "--compute-type", hw.asr_compute_type,
           "--emotion-device", hw.emotion_device]
    if model:
        cmd += ["--model", str(model)]
    return cmd


def run_streams(n: int, audio: Path, model: str | None, backend: str, hw: HardwarePath, timeout_s: float,
                tag: str = "bench") -> dict:
    """Start `n` processes at once on one file; wait for all; summarise each and the whole."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    procs: list[StreamProc] = []
    try:
        for i in range(n):
            ep, sid = free_endpoint(), f"{tag}-{n}x-{i}"
            rcv = Receiver(ep)  # connected before the process binds: ZeroMQ reconnects until it is there
            log = tempfile.TemporaryFile(mode="w+")
            t_launch = time.monotonic()  # before Popen: forking a large parent takes a while too
            p = subprocess.Popen(stream_command(audio, ep, sid, model, backend, hw), cwd=REPO, env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
            procs.append(StreamProc(i, ep, sid, p, rcv, log, t_launch))
        window = _watch(procs, timeout_s)
    finally:
        for sp in procs:
            if sp.returncode is None:  # timed out or interrupted: stop our own child, then reap it
                _stop(sp)
            sp.receiver.close()
    return _summarise(procs, window)


def _watch(procs: list[StreamProc], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    all_ready = first_end = None
    cpu_all_ready = cpu_first_end = None
    while any(sp.returncode is None for sp in procs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream processes still running after {timeout_s:.0f} s")
        for sp in procs:
            if sp.t_ready is None:
                hit = sp.receiver.wait_for(lambda t, m: t == "status" and m.get("kind") == "start", 0)
                if hit is not None:
                    sp.t_ready = hit[0]
                    sp.cpu_at_ready_s = _proc_cpu_s(sp.proc.pid)
            if sp.returncode is None:
                hwm = _peak_rss_mb(sp.proc.pid)  # monotonic, so the last reading before exit is the peak so far
                if hwm is not None:
                    sp.peak_rss_mb = max(sp.peak_rss_mb or 0.0, hwm)
                pid, status, ru = os.wait4(sp.proc.pid, os.WNOHANG)
                if pid:
                    sp.t_end = time.monotonic()
                    sp.returncode = os.waitstatus_to_exitcode(status)
                    sp.proc.returncode = sp.returncode
                    sp.cpu_s = ru.ru_utime + ru.ru_stime
        if all_ready is None and all(sp.t_ready is not None for sp in procs):
            all_ready, cpu_all_ready = time.monotonic(), machine_cpu_times()
        if first_end is None and any(sp.t_end is not None for sp in procs):
            first_end, cpu_first_end = time.monotonic(), machine_cpu_times()
        time.sleep(0.05)
    machine_pct = None
    if cpu_all_ready and cpu_first_end and first_end > all_ready:
        busy, total = (b - a for a, b in zip(cpu_all_ready, cpu_first_end))
        machine_pct = round(100 * busy / total * (os.cpu_count() or 1), 1) if total else None
    return {"all_streams_running_s": round(first_end - all_ready, 1) if all_ready and first_end else None,
            "machine_cpu_pct_while_all_ran": machine_pct}


def _stop(sp: StreamProc) -> None:
    try:
        sp.proc.send_signal(signal.SIGTERM)
        sp.proc.wait(10)
    except subprocess.TimeoutExpired:
        sp.proc.kill()
        sp.proc.wait(5)
    except OSError:
        pass
    sp.returncode = sp.proc.returncode


def _stderr_tail(sp: StreamProc, lines: int = 3) -> list[str]:
    try:
        sp.log.seek(0)
        return [ln.strip() for ln in sp.log.read().splitlines() if ln.strip()][-lines:]
    except (OSError, ValueError):
        return []
    finally:
        sp.log.close()


def _summarise(procs: list[StreamProc], window: dict) -> dict:
    streams = []
    all_lat: list[float] = []
    all_voice: list[float] = []
    for sp in procs:
        msgs = sp.receiver.snapshot()
        finals = [m for _, t, m in msgs if t == "emotion" and not m["partial"]]
        statuses = [m for _, t, m in msgs if t == "status"]
        last = next((m for m in reversed(statuses) if m.get("kind") == "stop"), statuses[-1] if statuses else None)
        lat = [m["latency_ms"]["eos_to_publish"] for m in finals if m["latency_ms"].get("eos_to_publish") is not None]
        # what the speaker waits: from the last voiced audio (paced replays publish it)
        voice = [m["latency_ms"]["voice_end_to_publish"] for m in finals
                 if m["latency_ms"].get("voice_end_to_publish") is not None]
        all_lat += lat
        all_voice += voice
        stream_s = (sp.t_end - sp.t_ready) if sp.t_end and sp.t_ready else None
        cpu_stream = (sp.cpu_s - sp.cpu_at_ready_s) if sp.cpu_s is not None and sp.cpu_at_ready_s is not None else None
        streams.append({
            "stream_id": sp.stream_id, "returncode": sp.returncode,
            "startup_s": round(sp.t_ready - sp.t_launch, 2) if sp.t_ready else None,
            "streaming_s": round(stream_s, 1) if stream_s else None,
            "cpu_s": round(sp.cpu_s, 2) if sp.cpu_s is not None else None,
            "cpu_pct_while_streaming": (round(100 * cpu_stream / stream_s, 1) if cpu_stream is not None and stream_s
                                        else None),
            "peak_rss_mb": round(sp.peak_rss_mb, 1) if sp.peak_rss_mb else None,
            "utterances": len(finals),
            "dropped_audio_frames": (last or {}).get("counters", {}).get("dropped_audio_frames"),
            "errors": (last or {}).get("counters", {}).get("errors"),
            "rtf": (last or {}).get("rtf"),
            "eos_to_publish_ms": summary(lat),
            "voice_end_to_publish_ms": summary(voice),
            "stop_status_received": bool(last and last.get("kind") == "stop"),
            "stderr_tail": _stderr_tail(sp) if sp.returncode else [],
        })
        if not sp.returncode:
            sp.log.close()
    ok = [s for s in streams if s["returncode"] == 0]
    dropped = [s["dropped_audio_frames"] for s in streams if s["dropped_audio_frames"] is not None]
    return {"n": len(procs), "streams": streams, **window,
            "all_ok": len(ok) == len(streams),
            "dropped_audio_frames": sum(dropped) if dropped else None,
            "eos_to_publish_ms": summary(all_lat),
            "voice_end_to_publish_ms": summary(all_voice),
            "cpu_pct_sum": round(sum(s["cpu_pct_while_streaming"] or 0 for s in streams), 1),
            "startup_s": summary(s["startup_s"] for s in streams),
            "peak_rss_mb": max((s["peak_rss_mb"] or 0 for s in streams), default=None)}
