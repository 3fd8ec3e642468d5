"""The shipped demo model end to end, as a new user first meets it: `python -m stream.run --demo` must
give the demo recording's eight labels (stream/demo/demo.json), published and schema-valid."""

import json

import pytest

from stream.messages import validate
from tests.test_stream_support import Collector, free_endpoint, have_espeak, run_stream

DEMO_JSON = __import__("stream.sources", fromlist=["DEMO_DIR"]).DEMO_DIR / "demo.json"


def test_demo_gives_the_eight_expected_labels():
    expected = json.loads(DEMO_JSON.read_text())["utterances"]
    assert len(expected) == 8
    ep = free_endpoint()
    sub = Collector(ep)
    try:
        res = run_stream("--demo", "--endpoint", ep, "--partial-every", "0")
        sub.wait_for(lambda t, m: t == "status" and m["kind"] == "stop", 5)
    finally:
        sub.close()
    assert res.returncode == 0, res.stderr
    finals = sub.finals()
    assert [m["label"] for m in finals] == [u["emotion"] for u in expected], [m["transcript"] for m in finals]
    for msg, utt in zip(finals, expected):  # each final covers its spoken utterance
        assert msg["start"] <= utt["start"] + 0.3 and msg["end"] >= utt["end"] - 0.3, (msg, utt)
        assert msg["text_used"] and msg["model"].endswith("demo_model")
    for topic, msg in sub.messages:
        validate(topic, msg)
    lines = res.stdout.strip().splitlines()
    assert [ln.split("] ", 1)[1].split()[0] for ln in lines] == [u["emotion"].upper() for u in expected]


@pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")
def test_demo_model_hears_a_new_espeak_sentence(tmp_path):
    """Beyond the demo file: a sentence the model never saw, spoken by espeak-ng, gets a label and text."""
    from tests.test_stream_support import make_spoken_file, words

    spoken = make_spoken_file(tmp_path / "new.wav", sentences=("I am so happy to see you again today",))
    ep = free_endpoint()
    sub = Collector(ep)
    try:
        res = run_stream("--file", str(spoken), "--endpoint", ep, "--partial-every", "0")
    finally:
        sub.close()
    assert res.returncode == 0, res.stderr
    finals = sub.finals()
    assert len(finals) == 1 and {"happy", "see"} <= words(finals[0]["transcript"])
    assert finals[0]["label"] in finals[0]["scores"] and finals[0]["modalities"] == ["speech", "text"]
