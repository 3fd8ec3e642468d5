"""Live behaviour: the real `--mic` path against a virtual PulseAudio microphone, and SIGTERM in the middle
of an utterance (finish it, publish it, exit 0)."""

import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import webrtcvad

from stream.messages import validate
from tests.test_stream_support import (
    EXPECTED_WORDS,
    REPO,
    Collector,
    clean_env,
    free_endpoint,
    have_espeak,
    make_spoken_file,
    stream_cmd,
    words,
)

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")
LONG = "I can't believe you broke it again and you did not even tell me about it until this morning"


def test_sigterm_mid_utterance_publishes_it_and_exits_0(tmp_path, ckpt):
    spoken = make_spoken_file(tmp_path / "long.wav", sentences=(LONG, "I am so happy to see you again"))
    ep = free_endpoint()
    sub = Collector(ep)
    proc = subprocess.Popen(stream_cmd("--file", str(spoken), "--realtime", "--model", str(ckpt), "--endpoint", ep,
                                       "--partial-every", "0.5"),
                            cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the first partial transcript means the first utterance is being spoken right now
        got = sub.wait_for(lambda t, m: t == "transcript" and m["partial"] and m["utterance_id"] == 0, 120)
        assert got, "no partial transcript"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        sub.wait_for(lambda t, m: t == "status" and m["kind"] == "stop", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "SIGTERM" in err
    finals = sub.finals()
    assert [m["utterance_id"] for m in finals] == [0], "the utterance in flight is published, nothing after it"
    sentence_end = 0.5 + len(LONG.split()) * 0.25  # espeak speaks ~4 words/s; the stop came well before the end
    assert finals[0]["end"] < sentence_end, "the published utterance was cut at the stop, mid-sentence"
    assert "believe" in words(finals[0]["transcript"]), finals[0]["transcript"]
    for topic, msg in sub.messages:
        validate(topic, msg)
    assert sub.of("status")[-1]["kind"] == "stop"


def test_mic_hears_what_is_played_on_the_virtual_microphone(tmp_path, ckpt, virtual_mic):
    env = virtual_mic.env
    spoken = make_spoken_file(tmp_path / "two.wav", gap_s=1.5)
    # where the two sentences begin in the file (webrtcvad on the file itself, 30 ms frames)
    x, sr = sf.read(str(spoken), dtype="int16")
    vad = webrtcvad.Vad(2)
    voiced = [vad.is_speech(x[i:i + 480].tobytes(), sr) for i in range(0, len(x) - 480, 480)]
    truth = [i * 0.03 for i in range(1, len(voiced)) if voiced[i] and not any(voiced[max(0, i - 20):i])]
    assert len(truth) == 2

    ep = free_endpoint()
    sub = Collector(ep)
    proc = subprocess.Popen(stream_cmd("--mic", "--model", str(ckpt), "--endpoint", ep, "--heartbeat", "0.5"),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # capture runs once the first heartbeat is out (models loaded, device open)
        assert sub.wait_for(lambda t, m: t == "status" and m["kind"] == "heartbeat", 120), "stream never started"
        subprocess.run(["paplay", str(spoken)], env=env, check=True, timeout=60)
        assert sub.wait_for(lambda t, m: len(sub.finals()) >= 2, 90), "utterances not published"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert proc.returncode == 0, err
    assert "microphone" in err
    finals = sub.finals()
    assert len(finals) == 2, [m["transcript"] for m in finals]
    for msg, expected in zip(finals, EXPECTED_WORDS):
        assert expected <= words(msg["transcript"]), msg["transcript"]
    # the audio clock matches what was played: the second utterance starts as long after the first as in the file
    gap_heard = finals[1]["start"] - finals[0]["start"]
    assert abs(gap_heard - (truth[1] - truth[0])) < 0.3, (gap_heard, truth)
    status = sub.of("status")
    assert status[-1]["counters"]["dropped_audio_frames"] == 0
    # live audio: every final says how long after the end of the voice it was published (what the speaker
    # waits), and the status carries the run's median/p95 of it
    assert all(m["latency_ms"]["voice_end_to_publish"] >= 0 for m in finals)
    assert status[-1]["latency_ms"]["voice_end"]["count"] == 2
    for topic, msg in sub.messages:
        validate(topic, msg)


CAPTURE_48K = r"""
import os, sys, time, numpy as np, sounddevice as sd
real = sd.check_input_settings
def usb_mic(*a, samplerate=None, **k):  # a device that refuses 16 kHz, like many USB microphones
    if samplerate == 16000:
        raise sd.PortAudioError("Invalid sample rate [PaErrorCode -9997]")
    return real(*a, samplerate=samplerate, **k)
sd.check_input_settings = usb_mic
from stream.sources import MicSource
src = MicSource()
src.start()
print("READY", src.rate, flush=True)
# capture until the test says playback is over, then one more second (the monitor source lags the sink)
done, after, got, deadline = sys.argv[2], None, [], time.monotonic() + 90
for f in src.frames():
    got.append(f.samples)
    if after is None and os.path.exists(done):
        after = sum(map(len, got)) + 16000
    if (after is not None and sum(map(len, got)) >= after) or time.monotonic() > deadline:
        break
src.close()
np.save(sys.argv[1], np.concatenate(got))
"""


def test_mic_that_refuses_16k_is_opened_at_its_rate_and_resampled(tmp_path, virtual_mic):
    env = virtual_mic.env
    spoken = make_spoken_file(tmp_path / "one.wav", sentences=("I am so happy to see you again",), gap_s=0.5)
    x, _ = sf.read(str(spoken), dtype="float32")
    out = tmp_path / "captured.npy"
    done = tmp_path / "played"
    # the capture runs until playback has ended, however late paplay starts on a loaded machine
    proc = subprocess.Popen([sys.executable, "-c", CAPTURE_48K, str(out), str(done)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline().split()
        assert ready[:1] == ["READY"], proc.stderr.read()
        assert int(ready[1]) != 16000, "the device's own rate was used"
        subprocess.run(["paplay", str(spoken)], env=env, check=True, timeout=60)
        done.touch()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    y = np.load(out).astype(np.float32) / 32768
    corr = np.correlate(y, x, mode="valid") if len(y) >= len(x) else np.zeros(1)
    lag = int(np.argmax(corr))
    seg = y[lag:lag + len(x)]
    r = float(np.dot(seg, x) / (np.linalg.norm(seg) * np.linalg.norm(x) + 1e-9))
    assert r > 0.95, f"captured audio does not match what was played (r={r:.3f})"


def test_microphone_that_vanishes_is_one_clear_error(ckpt, virtual_mic, tmp_path):
    env = virtual_mic.env
    ep = free_endpoint()
    sub = Collector(ep)
    proc = subprocess.Popen(stream_cmd("--mic", "--model", str(ckpt), "--endpoint", ep, "--heartbeat", "0.5"),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sub.wait_for(lambda t, m: t == "status" and m["kind"] == "heartbeat", 120), "stream never started"
        subprocess.run([str(REPO / "scripts" / "virtual_mic.sh"), "stop", env["HOME"]], timeout=60)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("stream.run: microphone") and "stopped delivering" in err
    errors = [m for m in sub.of("status") if m["kind"] == "error"]
    assert errors and errors[0]["error"]["stage"] == "source"
