"""Shared helpers for the stream end-to-end tests (no tests here): a real subscriber, a spoken file,
a small random FDRL checkpoint, and running `python -m stream.run` as a user would."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SENTENCES = ("I can't believe you broke it again", "I am so happy to see you again")
EXPECTED_WORDS = ({"believe", "broke"}, {"happy", "see"})


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def make_checkpoint(folder: Path) -> Path:
    import torch

    from fdrl_core.checkpoint import save_checkpoint
    from fdrl_core.config import FDRLConfig
    from fdrl_core.model import FDRL

    torch.manual_seed(0)
    return save_checkpoint(FDRL(FDRLConfig(d_model=64, heads=2)), folder)


def make_spoken_file(path: Path, sentences=SENTENCES, gap_s: float = 1.2) -> Path:
    """espeak-ng sentences separated by silence, 16 kHz mono WAV."""
    import soundfile as sf

    from fdrl_core.audio import load_audio

    tmp = path.parent
    pieces = [np.zeros(int(0.5 * 16000), np.float32)]
    for i, s in enumerate(sentences):
        wav = tmp / f"_s{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), s], check=True)
        pieces += [load_audio(wav), np.zeros(int(gap_s * 16000), np.float32)]
    sf.write(str(path), np.concatenate(pieces), 16000, subtype="PCM_16")
    return path


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


class Collector:
    """A real SUB socket in a thread, collecting every (topic, message) it receives."""

    def __init__(self, endpoint: str, topics=("emotion", "transcript", "status")):
        import zmq

        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.messages: list[tuple[str, dict]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            if self.sock.poll(50):
                topic, payload = self.sock.recv_multipart()[:2]
                self.messages.append((topic.decode(), json.loads(payload)))

    def wait_for(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(pred(t, m) for t, m in list(self.messages)):
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()

    def finals(self) -> list[dict]:
        return [m for t, m in self.messages if t == "emotion" and not m["partial"]]

    def of(self, topic: str) -> list[dict]:
        return [m for t, m in self.messages if t == topic]


def stream_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream.run", *args]


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "FDRL_MODEL"))}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def run_stream(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(stream_cmd(*args), cwd=REPO, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def words(text: str) -> set[str]:
    from stream.asr import normalize

    return set(normalize(text).split())


def assert_one_clean_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) >= 1
    return lines[-1]
