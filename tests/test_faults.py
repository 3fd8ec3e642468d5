"""Faults a long-running stream meets: an audio driver that never returns (a frozen PulseAudio), and
SIGTERM arriving then. The run must still publish the utterance in flight and end within seconds."""

import os
import signal
import subprocess
import sys
import time

import pytest

from stream.messages import validate
from tests.test_stream_support import (
    REPO,
    Collector,
    clean_env,
    free_endpoint,
    have_espeak,
    make_spoken_file,
    words,
)

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")
LONG = "I can't believe you broke it again and you did not even tell me about it until this morning"

# stream.run with a source whose stop() and close() never return, like a stream on a frozen audio server
FROZEN_SOURCE_RUN = r"""
import sys, threading
import stream.sources as sources

class FrozenDriver(sources.FileSource):
    def stop(self):
        threading.Event().wait()

    close = stop

def open_source(kind, *, path=None, frame_ms=30, queue_seconds=5.0, **_):
    return FrozenDriver(path, realtime=True, frame_ms=frame_ms, queue_seconds=queue_seconds)

sources.open_source = open_source
from stream.run import main
sys.exit(main(sys.argv[1:]))
"""


def _sigterm_and_time(proc, sub, pred, wait_s=120):
    assert sub.wait_for(pred, wait_s), "the stream never got going"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running 30 s after SIGTERM: {err[-2000:]}")
    return time.monotonic() - t0, out, err


def test_sigterm_ends_the_run_even_when_the_driver_never_returns(tmp_path, ckpt):
    spoken = make_spoken_file(tmp_path / "long.wav", sentences=(LONG, "I am so happy to see you again"))
    ep = free_endpoint()
    sub = Collector(ep)
    proc = subprocess.Popen([sys.executable, "-c", FROZEN_SOURCE_RUN, "--file", str(spoken), "--model", str(ckpt),
                             "--endpoint", ep, "--partial-every", "0.5"], cwd=REPO,
                            env=clean_env(PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        elapsed, out, err = _sigterm_and_time(
            proc, sub, lambda t, m: t == "transcript" and m["partial"] and m["utterance_id"] == 0)
        sub.wait_for(lambda t, m: t == "status" and m["kind"] == "stop", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert proc.returncode == 0, err
    print(f"SIGTERM -> exit {elapsed:.2f} s")
    assert elapsed < 15, f"took {elapsed:.1f} s after SIGTERM (deadline 4.5 s + start-up noise)"
    assert "Traceback" not in err and "did not return" in err
    finals = sub.finals()
    assert [m["utterance_id"] for m in finals] == [0], "the utterance in flight is published"
    assert "believe" in words(finals[0]["transcript"])
    for topic, msg in sub.messages:
        validate(topic, msg)


@pytest.mark.slow
def test_sigterm_with_pulseaudio_frozen_publishes_and_exits(tmp_path, ckpt, virtual_mic):
    """The issue's F1 as a user meets it: `--mic`, PulseAudio stopped with SIGSTOP mid-utterance."""
    env, pulse_pid = virtual_mic
    if pulse_pid is None:
        pytest.skip("cannot find the PulseAudio daemon's pid")
    spoken = make_spoken_file(tmp_path / "long.wav", sentences=(LONG,), gap_s=0.5)
    ep = free_endpoint()
    sub = Collector(ep)
    proc = subprocess.Popen([sys.executable, "-m", "stream.run", "--mic", "--model", str(ckpt), "--endpoint", ep,
                             "--heartbeat", "0.5", "--partial-every", "0.5"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    player = None
    try:
        assert sub.wait_for(lambda t, m: t == "status" and m["kind"] == "heartbeat", 120), "stream never started"
        player = subprocess.Popen(["paplay", str(spoken)], env=env)
        assert sub.wait_for(lambda t, m: t == "transcript" and m["partial"], 60), "no partial while speaking"
        os.kill(pulse_pid, signal.SIGSTOP)  # the audio server freezes mid-utterance
        time.sleep(1.0)
        elapsed, out, err = _sigterm_and_time(proc, sub, lambda t, m: True)
        sub.wait_for(lambda t, m: t == "status" and m["kind"] == "stop", 5)
    finally:
        os.kill(pulse_pid, signal.SIGCONT)
        if player is not None and player.poll() is None:
            player.kill()
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert proc.returncode in (0, 1), err
    print(f"SIGTERM -> exit {elapsed:.2f} s; rc {proc.returncode}; stderr tail: {err.strip().splitlines()[-3:]}")
    assert elapsed < 15, f"took {elapsed:.1f} s after SIGTERM"
    assert "Traceback" not in err
    finals = sub.finals()
    assert finals and finals[0]["utterance_id"] == 0, "the utterance in flight is published"




# PortAudio's loader hangs inside the quiet-stderr block (a frozen audio server at start-up)
HUNG_LOADER_RUN = r"""
import sys, threading
import stream.sources as sources

def hung_import():
    with sources._QuietStderr():
        threading.Event().wait()

sources._import_sounddevice = hung_import
sources.DRIVER_OPEN_TIMEOUT_S = 0.5
from stream.run import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("args", [["--mic"], ["--list-devices"]])
def test_a_driver_hung_while_stderr_is_silenced_still_gets_its_error_line(args):
    """Silencing PortAudio's noise on fd 2 inside a driver call that never returns must not silence our
    own messages: the user gets the one line saying why, not an exit 2 with nothing printed."""
    proc = subprocess.run([sys.executable, "-c", HUNG_LOADER_RUN, *args, "--endpoint", free_endpoint()],
                          cwd=REPO, env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not return from loading PortAudio" in lines[0], proc.stderr
