"""End to end with real parts: `python -m stream.run --file` publishing to a real ZeroMQ subscriber, and
the edges a user hits (unreadable file, missing model, endpoint in use, no microphone, a failing utterance)."""

import io
import socket
import subprocess
import time

import pytest

from stream.messages import validate
from tests.test_stream_support import (
    EXPECTED_WORDS,
    REPO,
    Collector,
    assert_one_clean_line,
    clean_env,
    free_endpoint,
    have_espeak,
    run_stream,
    stream_cmd,
    words,
)

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")


def test_file_run_publishes_schema_valid_messages(ckpt, spoken):
    ep = free_endpoint()
    sub = Collector(ep)  # a separate subscriber, connected before the stream starts
    try:
        # a file played as fast as possible gets partial passes only when asked
        res = run_stream("--file", str(spoken), "--model", str(ckpt), "--endpoint", ep, "--heartbeat", "0.5",
                         "--partial-every", "0.7")
    finally:
        sub.close()
    assert res.returncode == 0, res.stderr
    for topic, msg in sub.messages:
        validate(topic, msg)
    finals = sub.finals()
    assert len(finals) == 2, res.stderr
    for msg, expected in zip(finals, EXPECTED_WORDS):
        assert expected <= words(msg["transcript"]), msg["transcript"]
        assert msg["text_used"] and msg["modalities"] == ["speech", "text"]
        assert abs(sum(msg["scores"].values()) - 1) < 1e-3 and msg["label"] in msg["scores"]
        assert msg["latency_ms"]["eos_to_publish"] is not None
        assert msg["latency_ms"]["voice_end_to_publish"] is None  # read faster than real time: no wall clock
    assert finals[0]["end"] <= finals[1]["start"]
    transcripts = sub.of("transcript")
    assert any(m["partial"] for m in transcripts), "partial transcripts while the utterance grows"
    assert [m["text"] for m in transcripts if not m["partial"]] == [m["transcript"] for m in finals]
    partial_emotions = [m for m in sub.of("emotion") if m["partial"]]
    assert partial_emotions and all(m["latency_ms"]["eos_to_publish"] is None for m in partial_emotions)
    assert all(m["final_kind"] == "confirmed" and m["revises"] is None for m in finals)
    for uid in {m["utterance_id"] for m in finals}:  # the final is the last and highest revision
        revs = [m["revision"] for m in sub.of("emotion") if m["utterance_id"] == uid]
        assert revs == sorted(revs) and revs[-1] == next(m["revision"] for m in finals if m["utterance_id"] == uid)
    kinds = [m["kind"] for m in sub.of("status")]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "heartbeat" in kinds
    last = sub.of("status")[-1]
    assert last["counters"]["utterances"] == 2 and last["counters"]["errors"] == 0
    assert last["latency_ms"]["count"] == 2
    for seqs in ([m["seq"] for m in sub.of(t)] for t in ("emotion", "transcript", "status")):
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gaps for a subscriber that keeps up"
    # --print is on for --file: one human line per utterance, then the latency summary on stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2 and "believe" in lines[0] and "(speech+text," in lines[0]
    assert "latency end-of-speech" in res.stderr and "median" in res.stderr


def test_unreadable_file(tmp_path, ckpt):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    res = run_stream("--file", str(bad), "--model", str(ckpt), "--endpoint", free_endpoint(), timeout=60)
    assert res.returncode == 2
    assert "cannot read audio file" in assert_one_clean_line(res.stderr)


def test_missing_default_model(spoken, tmp_path):
    env = clean_env(FDRL_MODEL=str(tmp_path / "no-such-model"))
    res = run_stream("--file", str(spoken), "--endpoint", free_endpoint(), env=env, timeout=60)
    assert res.returncode == 2
    assert "emotion model not found" in assert_one_clean_line(res.stderr)
    res = run_stream("--file", str(spoken), "--model", str(tmp_path / "nope"), "--endpoint", free_endpoint(),
                     timeout=60)
    assert res.returncode == 2 and "not found" in assert_one_clean_line(res.stderr)


def test_endpoint_in_use(spoken, ckpt):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        ep = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        res = run_stream("--file", str(spoken), "--model", str(ckpt), "--endpoint", ep, timeout=60)
    assert res.returncode == 2
    assert "address already in use" in assert_one_clean_line(res.stderr)


def test_mic_without_a_microphone(ckpt, tmp_path):
    # an isolated environment: no PulseAudio server to reach, so PortAudio finds no input device
    env = clean_env(HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path / "run"))
    res = run_stream("--mic", "--model", str(ckpt), "--endpoint", free_endpoint(), env=env, timeout=60)
    assert res.returncode == 2
    line = assert_one_clean_line(res.stderr)
    assert line.startswith("stream.run: no microphone") and "--list-devices" in line, line


def test_bad_arguments_are_one_line(ckpt):
    res = run_stream("--file", "x.wav", "--hangover-ms", "100", "--tail-ms", "50", "--max-utterance", "60",
                     timeout=60)
    assert res.returncode == 2 and "maximum utterance" in assert_one_clean_line(res.stderr)
    res = subprocess.run(stream_cmd("--help"), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 0 and "--mic" in res.stdout and "stream/schema" in res.stdout


def test_a_failing_utterance_is_reported_and_the_stream_goes_on(ckpt, spoken, speech_frontend):
    """One utterance's ASR raises: a status 'error' message names it, and the next one is still published."""
    from stream.asr import AsrConfig, Recognizer
    from stream.config import PipelineConfig
    from stream.emotion import EmotionConfig, EmotionStage
    from stream.pipeline import Pipeline
    from stream.publisher import Publisher
    from stream.sources import FileSource

    class FailsOnce(Recognizer):
        failed = False

        def transcribe_many(self, requests):  # the pipeline's entry point (passes of all streams)
            if any(final for _, final, _ in requests) and not self.failed:
                self.failed = True
                raise RuntimeError("simulated decoder failure")
            return super().transcribe_many(requests)

    ep = free_endpoint()
    cfg = PipelineConfig(asr=AsrConfig(partial_every_s=0), emotion=EmotionConfig(model=str(ckpt)), endpoint=ep)
    pub = Publisher(ep)
    sub = Collector(ep)
    try:
        time.sleep(0.3)  # let the subscription reach the publisher
        pipe = Pipeline(cfg, FileSource(spoken), FailsOnce(cfg.asr, frontend=speech_frontend),
                        EmotionStage(cfg.emotion), pub, log=io.StringIO())
        assert pipe.run() == 0
        sub.wait_for(lambda t, m: t == "status" and m["kind"] == "stop", 5)
    finally:
        pub.close()
        sub.close()
    errors = [m for m in sub.of("status") if m["kind"] == "error"]
    assert len(errors) == 1 and errors[0]["error"]["utterance_id"] == 0
    assert errors[0]["error"]["stage"] == "asr" and "simulated decoder failure" in errors[0]["error"]["message"]
    finals = sub.finals()
    assert [m["utterance_id"] for m in finals] == [1] and EXPECTED_WORDS[1] <= words(finals[0]["transcript"])
    for topic, msg in sub.messages:
        validate(topic, msg)


def test_warm_up_runs_once_on_gpu_paths_only():
    """A GPU path gets one throw-away pass through both models before the audio (the first CUDA call pays
    the lazy set-up); a CPU run starts at once unless asked."""
    from types import SimpleNamespace

    import numpy as np

    from stream.run import _warm_up

    calls = []

    class Rec:
        def transcribe(self, audio):
            calls.append(("asr", len(audio)))
            return SimpleNamespace(frames=np.zeros((150, 384), np.float32))

    class Emo:
        name = "onnxruntime:demo_model"

        def classify(self, frames, text):
            calls.append(("emotion", frames.shape))

    def args(**kw):
        return SimpleNamespace(**{"asr_device": "cpu", "emotion_device": "cpu", "backend": "auto",
                                  "warm_up": "auto", **kw})

    assert _warm_up(args(), Rec(), Emo()) is None and not calls
    assert _warm_up(args(asr_device="cuda"), Rec(), Emo()) >= 0
    assert calls == [("asr", 48000), ("emotion", (150, 384))]
    assert _warm_up(args(asr_device="cuda", warm_up="off"), Rec(), Emo()) is None
    assert _warm_up(args(warm_up="on"), Rec(), Emo()) is not None and len(calls) == 4
