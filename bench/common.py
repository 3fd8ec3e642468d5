"""Pieces every benchmark shares: summaries, wall + CPU clocks, a ZeroMQ receiver, result files."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# relative to where the benchmark is run, never inside the installed package
DEFAULT_OUT = Path("bench-results")


def summary(xs) -> dict:
    """median / p95 / mean / n of a list of numbers (None values skipped); Nones when empty."""
    a = np.asarray([x for x in xs if x is not None], dtype=np.float64)
    if not len(a):
        return {"median": None, "p95": None, "mean": None, "n": 0}
    return {"median": round(float(np.median(a)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "mean": round(float(a.mean()), 2), "n": int(len(a))}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


@dataclass
class Cost:
    """Wall and process CPU time of one stage, in ms. Process CPU counts every thread of this process
    (CTranslate2's and onnxruntime's pools included), which is what the stage costs the machine."""
    wall_ms: float = 0.0
    cpu_ms: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall_ms + other.wall_ms, self.cpu_ms + other.cpu_ms)


class Clock:
    """`with Clock() as c: ...` then c.cost; `c.t0` / `c.t1` are time.monotonic() stamps."""

    def __enter__(self) -> Clock:
        self.c0 = time.process_time()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.t1 = time.monotonic()
        self.cost = Cost((self.t1 - self.t0) * 1000, (time.process_time() - self.c0) * 1000)


def timed(fn, *args, **kwargs):
    """(result, Cost) of one call."""
    with Clock() as c:
        out = fn(*args, **kwargs)
    return out, c.cost


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Receiver:
    """A subscriber in a thread: every [topic, json] message with its time.monotonic() of arrival.
    CLOCK_MONOTONIC is system-wide on Linux, so arrival times compare with stamps taken in other processes."""

    def __init__(self, endpoint: str, topics=("emotion", "status")):
        import zmq

        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 100000)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.sock.connect(endpoint)
        self.messages: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-receiver", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(20):
                parts = self.sock.recv_multipart()
                t = time.monotonic()
                with self.lock:
                    self.messages.append((t, parts[0].decode(), json.loads(parts[1])))

    def snapshot(self) -> list[tuple[float, str, dict]]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, pred, timeout: float) -> tuple[float, str, dict] | None:
        deadline = time.monotonic() + timeout
        while True:
            for item in self.snapshot():
                if pred(item[1], item[2]):
                    return item
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def finals(self) -> list[tuple[float, dict]]:
        return [(t, m) for t, topic, m in self.snapshot() if topic == "emotion" and not m["partial"]]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def write_results(out: Path, name: str, started: float, report: dict, md: str) -> tuple[Path, Path]:
    """<out>/<name>-<stamp>.json and .md, plus <name>-latest.json/.md copies for scripts and READMEs."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    js, mdp = out / f"{name}-{stamp}.json", out / f"{name}-{stamp}.md"
    text = json.dumps(report, indent=2, default=_jsonable) + "\n"
    js.write_text(text)
    mdp.write_text(md)
    (out / f"{name}-latest.json").write_text(text)
    (out / f"{name}-latest.md").write_text(md)
    return js, mdp


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def fmt(x, nd: int = 0, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:.{nd}f}{unit}"
