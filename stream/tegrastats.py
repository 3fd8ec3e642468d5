"""Jetson board figures (RAM, GPU load, temperatures, power) for the status heartbeat.

`tegrastats` is the only tool every Jetson has (there is no nvidia-smi); it prints one dense line per
interval. `TegraStats` runs it in the background and keeps the latest parsed line; on any machine
without the binary it does nothing and `latest()` stays None, so callers need no platform check.
"""

from __future__ import annotations

import atexit
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB(?: \(lfb (\d+)x(\d+)MB\))?")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_CORE = re.compile(r"(\d+)%(?:@(\d+))?")
# "GR3D_FREQ 0%" (no root), "GR3D_FREQ 0%@[305]" / "0%@[0,0]" (Orin), "GR3D_FREQ 0%@76" (older),
# "GR3D_FREQ @[0,0,0]" (Thor: no load figure)
_GR3D = re.compile(r"\bGR3D_FREQ (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%")
_TEMP = re.compile(r"\b([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW")
_STAMP = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d) ")
_ABSENT_SENSOR_C = -100.0  # tegrastats prints -256C for sensors that are not fitted


def parse_line(line: str) -> dict | None:
    """One tegrastats line -> dict (see keys below), or None if it is not a tegrastats line.

    Keys: ram_used_mb, ram_total_mb, swap_used_mb, swap_total_mb, cpu_load (list, None = core off),
    cpu_load_avg, gpu_load (GR3D %, None if not reported), gpu_freq_mhz (list or None), emc_load,
    temps_c {sensor: C}, temp_max_c, power_mw {rail: {"now": mW, "avg": mW}}, timestamp (str or None).
    """
    ram = _RAM.search(line)
    if ram is None:
        return None
    out: dict = {"ram_used_mb": int(ram.group(1)), "ram_total_mb": int(ram.group(2))}

    swap = _SWAP.search(line)
    out["swap_used_mb"] = int(swap.group(1)) if swap else None
    out["swap_total_mb"] = int(swap.group(2)) if swap else None

    loads: list[int | None] = []
    cpu = _CPU.search(line)
    if cpu:
        for core in cpu.group(1).split(","):
            m = _CORE.fullmatch(core.strip())
            loads.append(int(m.group(1)) if m else None)  # "off" = core offline
    out["cpu_load"] = loads
    online = [v for v in loads if v is not None]
    out["cpu_load_avg"] = round(sum(online) / len(online), 1) if online else None

    gr3d = _GR3D.search(line)
    out["gpu_load"] = int(gr3d.group(1)) if gr3d and gr3d.group(1) is not None else None
    out["gpu_freq_mhz"] = [int(f) for f in gr3d.group(2).split(",") if f] if gr3d and gr3d.group(2) else None
    emc = _EMC.search(line)
    out["emc_load"] = int(emc.group(1)) if emc else None

    temps = {name: float(v) for name, v in _TEMP.findall(line) if float(v) > _ABSENT_SENSOR_C}
    out["temps_c"] = temps
    out["temp_max_c"] = max(temps.values()) if temps else None
    out["power_mw"] = {name: {"now": int(now), "avg": int(avg)} for name, now, avg in _RAIL.findall(line)}
    stamp = _STAMP.match(line)
    out["timestamp"] = stamp.group(1) if stamp else None
    return out


def find_tegrastats() -> str | None:
    """The tegrastats binary, or None when this is not a Jetson (or the container lacks it)."""
    found = shutil.which("tegrastats")
    if found:
        return found
    for candidate in ("/usr/bin/tegrastats", "/usr/sbin/tegrastats"):
        if Path(candidate).is_file():
            return candidate
    return None


class TegraStats:
    """Background `tegrastats --interval N` reader; `latest()` is the newest parsed line (or None).

    Starts on construction. A no-op where tegrastats does not exist, so it is safe to create anywhere.
    """

    def __init__(self, interval_ms: int = 1000, binary: str | None = None, start: bool = True):
        self.interval_ms = interval_ms
        self.binary = binary if binary is not None else find_tegrastats()
        self._latest: dict | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    @property
    def available(self) -> bool:
        return self.binary is not None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.binary is None or self.running:
            return
        try:
            self._proc = subprocess.Popen(
                [self.binary, "--interval", str(self.interval_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                text=True, bufsize=1,
            )
        except OSError:  # not executable, wrong architecture: behave as on a non-Jetson
            self._proc = None
            return
        self._thread = threading.Thread(target=self._read, args=(self._proc,), name="tegrastats", daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                parsed = parse_line(line.strip())
                if parsed is not None:
                    parsed["sampled_at"] = time.time()
                    with self._lock:
                        self._latest = parsed
        except (OSError, ValueError):  # pipe closed by stop()
            pass

    def latest(self) -> dict | None:
        """A copy of the newest figures (with `sampled_at`, unix seconds), or None before the first line."""
        with self._lock:
            return dict(self._latest) if self._latest is not None else None

    def stop(self, timeout: float = 2.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> TegraStats:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self.stop(timeout=0.5)
        except Exception:
            pass


_shared: TegraStats | None = None
_shared_lock = threading.Lock()


def snapshot() -> dict | None:
    """Latest figures from one process-wide reader, started on first call; None when not on a Jetson.

    This is what the run-time's status heartbeat calls once per beat.
    """
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = TegraStats()
                if _shared.running:
                    atexit.register(_shared.stop)
    return _shared.latest()
