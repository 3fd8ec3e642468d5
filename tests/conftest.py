import os
import shutil
import subprocess

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
