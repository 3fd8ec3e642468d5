"""A three-hour recording runs with flat memory: files are read and resampled block by block."""

import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from tests.test_stream_support import REPO, clean_env, free_endpoint, have_espeak, make_spoken_file

PEAK_LIMIT_MB = 800


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@pytest.mark.slow
@pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")
def test_three_hour_file_runs_with_flat_memory(tmp_path):
    rate, hours = 16000, 3
    speech = sf.read(str(make_spoken_file(tmp_path / "s.wav", sentences=("I am so happy to see you again",))),
                     dtype="float32")[0]
    path = tmp_path / "three_hours.wav"
    rng = np.random.default_rng(0)
    minute = (rng.standard_normal(rate * 60) * 3e-4).astype(np.float32)  # quiet room noise
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_16") as f:
        f.write(speech)
        for _ in range(hours * 60):
            f.write(minute)
        f.write(speech)
    proc = subprocess.Popen([sys.executable, "-m", "stream.run", "--file", str(path), "--partial-every", "0",
                             "--endpoint", free_endpoint()], cwd=REPO, env=clean_env(PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 1800:
        peak = max(peak, _vm_hwm_mb(proc.pid) or 0.0)
        time.sleep(0.5)
    out, err = proc.communicate(timeout=60)
    print(f"3-hour file: peak RSS {peak:.0f} MB, wall {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, err[-2000:]
    assert len(out.strip().splitlines()) == 2, out  # the sentence at the start and the one three hours later
    assert peak <= PEAK_LIMIT_MB, f"peak RSS {peak:.0f} MB"
