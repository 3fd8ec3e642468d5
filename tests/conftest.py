import os
import shutil
import signal
import subprocess
from typing import NamedTuple

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def spoken_wav(tmp_path_factory):
    """A real spoken sentence, synthesised with espeak-ng (installed by scripts/setup.sh)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    path = tmp_path_factory.mktemp("speech") / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "I am so happy to see you again today"], check=True)
    return path


@pytest.fixture(scope="session")
def speech_frontend():
    from fdrl_core.speech_frontend import SpeechFrontend

    return SpeechFrontend()


@pytest.fixture(scope="session")
def text_frontend():
    from fdrl_core.text_frontend import TextFrontend

    return TextFrontend()


def random_batch(b=4, ts=40, tt=10, empty_text=(2,), seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, ts, 384, generator=g)
    t = torch.randn(b, tt, 384, generator=g)
    ms = torch.ones(b, ts, dtype=torch.bool)
    mt = torch.ones(b, tt, dtype=torch.bool)
    if b > 1:
        ms[1, ts // 2:] = False
        mt[b - 1, tt // 3:] = False
    for i in empty_text:
        mt[i] = False
    y = torch.arange(b) % 4
    return s, ms, t, mt, y


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An untrained FDRL checkpoint: the stream tests check the run-time, not the model's accuracy."""
    from tests.test_stream_support import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "fdrl")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """Two espeak-ng sentences separated by silence."""
    from tests.test_stream_support import make_spoken_file

    return make_spoken_file(tmp_path_factory.mktemp("audio") / "two.wav")


class VirtualMic(NamedTuple):
    env: dict  # environment that points PulseAudio clients at the virtual microphone
    pid: int | None  # the PulseAudio server's pid (tests may freeze it)


@pytest.fixture
def virtual_mic(tmp_path):
    """A PulseAudio null-sink microphone (scripts/virtual_mic.sh), so the real --mic path runs without a
    sound card; stopped (and resumed first, if a test froze it) afterwards."""
    from tests.test_stream_support import REPO, clean_env

    for tool in ("pulseaudio", "pactl", "parec", "paplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs the virtual-microphone tools)")
    script = REPO / "scripts" / "virtual_mic.sh"
    d = tmp_path / "pulse"
    res = subprocess.run([str(script), "start", str(d)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        pytest.skip(f"virtual microphone unavailable: {res.stderr.strip()}")
    env = clean_env(HOME=str(d), XDG_RUNTIME_DIR=str(d / "run"), PULSE_SERVER=f"unix:{d}/run/pulse/native",
                    PULSE_SOURCE="vmic")
    pid_file = d / "run" / "pulse" / "pid"
    pid = int(pid_file.read_text().split()[0]) if pid_file.is_file() else None
    yield VirtualMic(env, pid)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    subprocess.run([str(script), "stop", str(d)], capture_output=True, timeout=60)
