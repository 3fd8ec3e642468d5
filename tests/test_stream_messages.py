"""The message contract (JSON Schema files) and the ZeroMQ publisher, with real sockets."""

import json
import socket
import threading
import time

import jsonschema
import pytest
import zmq

from stream.messages import SCHEMAS, MessageFactory, format_line, schema, validate
from stream.publisher import Publisher, PublisherError


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def sample_messages(f: MessageFactory) -> list[tuple[str, dict]]:
    scores = {"neutral": 0.05, "happy": 0.02, "angry": 0.91, "sad": 0.02}
    common = dict(utterance_id=3, start=12.3, end=14.1)
    return [
        ("transcript", f.transcript(**common, partial=True, revision=1, text="I can't believe", reliable=True,
                                    reason=None, no_speech_prob=0.1, avg_logprob=-0.3, asr_ms=310.0)),
        ("emotion", f.emotion(**common, partial=False, revision=2, transcript="I can't believe you did that",
                              text_used=True, text_dropped=None, label="angry", scores=scores, confidence=0.91,
                              modalities=("speech", "text"), asr_ms=300.0, emotion_ms=20.0,
                              eos_to_publish_ms=230.0, model="torch:demo_model")),
        ("emotion", f.emotion(**common, partial=False, revision=1, transcript="Thanks for watching!",
                              text_used=False, text_dropped="known hallucination 'thanks for watching'",
                              label="sad", scores=scores, confidence=0.55, modalities=["speech"], asr_ms=300.0,
                              emotion_ms=20.0, eos_to_publish_ms=240.0, model="torch:demo_model")),
        ("status", f.status(kind="heartbeat", source="microphone 'default'", audio_time=20.5, uptime_s=25.0,
                            counters={"utterances": 4, "partials": 9, "discarded": 1, "dropped_audio_frames": 0,
                                      "queue_depth": 2, "errors": 0, "messages_sent": 40, "send_failures": 0},
                            rtf=0.31, rss_mb=600.0, latency_ms={"median": 240.0, "p95": 410.0, "count": 4})),
        ("status", f.status(kind="error", source="file x.wav", audio_time=1.0, uptime_s=2.0,
                            counters={"utterances": 0, "partials": 0, "discarded": 0, "dropped_audio_frames": 0,
                                      "queue_depth": 0, "errors": 1, "messages_sent": 1, "send_failures": 0},
                            rtf=None, rss_mb=None, error={"utterance_id": 0, "stage": "asr", "message": "boom"})),
    ]


def test_schemas_are_valid_and_match_messages():
    for topic, sid in SCHEMAS.items():
        jsonschema.Draft202012Validator.check_schema(schema(topic))
        assert schema(topic)["properties"]["schema"]["const"] == sid
    f = MessageFactory("test-stream")
    for topic, msg in sample_messages(f):
        validate(topic, json.loads(json.dumps(msg)))
    assert f.seq == {"emotion": 2, "transcript": 1, "status": 2}, "sequence numbers count per topic"


def test_schema_rejects_broken_messages():
    f = MessageFactory("s")
    _, emo = sample_messages(f)[1]
    for broken in ({**emo, "confidence": 1.5}, {k: v for k, v in emo.items() if k != "label"},
                   {**emo, "modalities": ["speech", "video"]}, {**emo, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            validate("emotion", broken)


def test_human_lines():
    f = MessageFactory("s")
    msgs = dict((t, m) for t, m in sample_messages(f)[:2])
    line = format_line("emotion", msgs["emotion"])
    assert line == '[12.3-14.1 s] ANGRY 0.91  "I can\'t believe you did that"  (speech+text, 230 ms)'
    dropped = format_line("emotion", sample_messages(f)[2][1])
    assert "text not used: known hallucination" in dropped and "(speech, 240 ms)" in dropped
    assert "partial r1" in format_line("transcript", msgs["transcript"])


def test_pub_sub_roundtrip_and_port_in_use():
    ep = free_endpoint()
    pub = Publisher(ep)
    try:
        with pytest.raises(PublisherError, match="already in use"):
            Publisher(ep)
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(ep)
        sub.setsockopt(zmq.SUBSCRIBE, b"emotion")
        f = MessageFactory("s")
        _, emo = sample_messages(f)[1]
        got = None
        deadline = time.monotonic() + 10
        while got is None and time.monotonic() < deadline:  # the subscription needs a moment to arrive
            pub.send("status", {"ignored": True})
            pub.send("emotion", emo)
            if sub.poll(100):
                got = sub.recv_multipart()
        sub.close()
        assert got is not None and got[0] == b"emotion"
        validate("emotion", json.loads(got[1]))
    finally:
        pub.close()


def test_stalled_subscriber_never_blocks_the_publisher():
    ep = free_endpoint()
    pub = Publisher(ep, sndhwm=10)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 10)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(ep)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    time.sleep(0.3)
    big = {"pad": "x" * 10000}
    done = threading.Event()

    def flood():
        for _ in range(5000):  # far beyond both high-water marks; the subscriber never reads
            pub.send("emotion", big)
        done.set()

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    assert done.wait(60), "publishing must not wait for a subscriber that does not read"
    sub.close()
    pub.close()
