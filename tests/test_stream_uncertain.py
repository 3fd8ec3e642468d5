"""White noise, a square wave and a chord through `python -m stream.run --file` (the bundled demo model):
never a confident label. Whatever the VAD lets through is published as `uncertain`, with the reason."""

import numpy as np
import soundfile as sf

from stream.messages import validate
from tests.test_stream_support import Collector, free_endpoint, run_stream


def _noise_file(path):
    sr = 16000
    rng = np.random.default_rng(0)
    t = np.arange(3 * sr) / sr
    gap = np.zeros(sr)
    parts = [gap, 0.2 * rng.standard_normal(3 * sr), gap, 0.3 * np.sign(np.sin(2 * np.pi * 220 * t)), gap,
             sum(0.15 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)), gap]
    sf.write(str(path), np.concatenate(parts).astype(np.float32), sr, subtype="PCM_16")
    return path


def test_noise_and_tones_never_get_a_confident_label(tmp_path):
    wav = _noise_file(tmp_path / "noise.wav")
    ep = free_endpoint()
    sub = Collector(ep)
    try:
        res = run_stream("--file", str(wav), "--endpoint", ep)
    finally:
        sub.close()
    assert res.returncode == 0, res.stderr
    finals = sub.finals()
    for msg in finals:
        validate("emotion", msg)
        assert msg["uncertain"], msg
        assert msg["uncertain_reason"], msg
    confident_lines = [ln for ln in res.stdout.splitlines() if ln.startswith("[") and "UNCERTAIN" not in ln]
    assert not confident_lines, res.stdout
