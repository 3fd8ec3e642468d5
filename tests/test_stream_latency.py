"""Issue 10's run-time contract: stable partials (LocalAgreement, stability flags), no partial passes for a
file played as fast as possible, early finals with revision numbers, several streams in one process, and
the observer events, with the real recogniser and VAD on spoken audio."""

import io
import random

import jsonschema
import numpy as np
import pytest

from stream.asr import LocalAgreement, normalize
from stream.messages import MessageFactory, validate
from tests.test_stream_support import EXPECTED_WORDS, have_espeak, make_spoken_file, words


class Bus:
    """A publisher that keeps what it was given (the pipeline's side of the bus, without sockets)."""

    def __init__(self):
        self.messages: list[tuple[str, dict]] = []
        self.sent = self.failures = 0

    def send(self, topic, msg):
        validate(topic, msg)  # every message keeps the contract
        self.messages.append((topic, msg))
        self.sent += 1

    def of(self, topic, stream_id=None):
        return [m for t, m in self.messages if t == topic and stream_id in (None, m["stream_id"])]

    def finals(self, stream_id=None):
        return [m for m in self.of("emotion", stream_id) if not m["partial"]]


# ------------------------------------------------------------------ LocalAgreement (no model needed)


def test_local_agreement_commits_what_two_passes_agree_on_and_never_retracts():
    la = LocalAgreement(2)
    assert la.update("I can") == ("", "I can")  # one pass: nothing agreed yet
    assert la.update("I can't believe") == ("I", "can't believe")
    assert la.update("I can't believe you") == ("I can't believe", "you")
    # a pass that contradicts committed words does not take them back
    assert la.update("Hi can't") == ("I can't believe", "")
    assert la.update("I can't believe you broke it.")[0] == "I can't believe"
    assert la.update("I can't believe you broke it again")[0] == "I can't believe you broke it"  # newest wording

    rng = random.Random(0)
    vocab = "a b c d e".split()
    for _ in range(200):  # random hypotheses: committed text only ever grows by appending words
        la, before = LocalAgreement(2), []
        for _ in range(12):
            hyp = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 8)))
            committed, tentative = la.update(hyp)
            now = committed.split()
            assert now[: len(before)] == before
            before = now


def test_schema_v2_fields():
    f = MessageFactory("s")
    scores = {"neutral": 0.1, "happy": 0.7, "angry": 0.1, "sad": 0.1}
    common = dict(utterance_id=0, start=0.0, end=1.0, transcript="I am happy", text_used=True, text_dropped=None,
                  label="happy", scores=scores, confidence=0.7, modalities=["speech", "text"], asr_ms=1.0,
                  emotion_ms=1.0, model="m")
    partial = f.emotion(**common, partial=True, revision=1, eos_to_publish_ms=None, stable=False)
    early = f.emotion(**common, partial=False, revision=2, eos_to_publish_ms=5.0, final_kind="early")
    revised = f.emotion(**common, partial=False, revision=4, eos_to_publish_ms=5.0, final_kind="early", revises=2)
    t = f.transcript(utterance_id=0, start=0.0, end=1.0, partial=True, revision=1, text="I am happy",
                     reliable=True, reason=None, no_speech_prob=0.1, avg_logprob=-0.2, asr_ms=1.0,
                     committed="I am", tentative="happy")
    for topic, m in (("emotion", partial), ("emotion", early), ("emotion", revised), ("transcript", t)):
        validate(topic, m)
    assert partial["schema"] == "fdrl.emotion/4" and t["schema"] == "fdrl.transcript/2"
    assert (partial["stable"], partial["final_kind"], partial["revises"]) == (False, None, None)
    assert (early["stable"], early["final_kind"], revised["revises"]) == (True, "early", 2)
    assert t["text"] == "I am happy" and (t["committed"], t["tentative"]) == ("I am", "happy")  # v1 field kept
    with pytest.raises(jsonschema.ValidationError):
        validate("emotion", {**early, "final_kind": "maybe"})
    with pytest.raises(ValueError):
        f.emotion(**common, partial=False, revision=2, eos_to_publish_ms=5.0, final_kind="maybe")


# ------------------------------------------------------------------ the pipeline on spoken audio

needs_speech = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")


@pytest.fixture(scope="module")
def emotion(ckpt):
    from stream.emotion import EmotionConfig, EmotionStage

    return EmotionStage(EmotionConfig(model=str(ckpt)))


@pytest.fixture(scope="module")
def recognizer(speech_frontend):
    from stream.asr import AsrConfig, Recognizer

    return Recognizer(AsrConfig(), frontend=speech_frontend)


def run_pipeline(cfg, sources, recognizer, emotion, **kw):
    from stream.pipeline import Pipeline

    bus, events = Bus(), []
    pipe = Pipeline(cfg, sources, recognizer, emotion, bus, out=io.StringIO(), log=io.StringIO(),
                    observers=[events.append], **kw)
    return pipe, bus, events


@needs_speech
def test_fast_file_does_no_partial_passes_unless_asked(spoken, recognizer, emotion):
    from stream.config import PipelineConfig
    from stream.sources import FileSource

    pipe, bus, events = run_pipeline(PipelineConfig(), FileSource(spoken), recognizer, emotion)
    assert pipe.run() == 0
    assert pipe.stats.partials == 0 and not [m for m in bus.of("transcript") if m["partial"]]
    passes = [e for e in events if e.kind == "pass_start"]
    assert len(passes) == 2 and all(e.data["final"] for e in passes)
    finals = bus.finals()
    assert [m["utterance_id"] for m in finals] == [0, 1]
    assert all(m["final_kind"] == "confirmed" and m["revises"] is None and m["stable"] for m in finals)
    for msg, expected in zip(finals, EXPECTED_WORDS):
        assert expected <= words(msg["transcript"])
    kinds = [e.kind for e in events]
    for kind in ("source_start", "speech_start", "speech_end", "pass_start", "pass_end", "published", "source_end"):
        assert kind in kinds, kind
    assert kinds[0] == "source_start" and kinds.index("speech_start") < kinds.index("speech_end")
    assert kinds.index("source_end") > max(i for i, k in enumerate(kinds) if k == "speech_end")
    ends = [e for e in events if e.kind == "speech_end"]
    assert [e.utterance_id for e in ends] == [0, 1] and all(e.audio_t <= m["end"] for e, m in zip(ends, finals))


@needs_speech
def test_asked_for_partials_they_commit_words_without_retracting_and_flag_stability(spoken, recognizer, emotion):
    from stream.asr import AsrConfig
    from stream.config import PipelineConfig
    from stream.sources import FileSource

    cfg = PipelineConfig(asr=AsrConfig(partial_every_s=0.4), fast_partials=True)
    pipe, bus, _ = run_pipeline(cfg, FileSource(spoken), recognizer, emotion)
    assert pipe.run() == 0 and pipe.stats.partials >= 4
    for uid in (0, 1):
        msgs = [m for m in bus.of("transcript") if m["utterance_id"] == uid]
        assert [m["revision"] for m in msgs] == list(range(1, len(msgs) + 1))
        assert msgs[-1]["partial"] is False and msgs[-1]["committed"] == msgs[-1]["text"]
        committed = []
        for m in msgs:  # each message's committed words start with every earlier message's
            now = [normalize(w) for w in m["committed"].split()]
            assert now[: len(committed)] == committed, (committed, m["committed"])
            committed = now
            if m["partial"]:
                assert f"{m['committed']} {m['tentative']}".split() == m["text"].split()
        emos = [m for m in bus.of("emotion") if m["utterance_id"] == uid and m["partial"]]
        assert emos and emos[0]["stable"] is False  # one pass is never enough
        for prev, m in zip(emos, emos[1:]):
            # stable once two passes in a row agree (default 2) and the latest gives it the default probability
            assert m["stable"] == (m["label"] == prev["label"] and m["confidence"] >= cfg.stable_confidence)


@needs_speech
def test_early_final_then_resumed_speech_gives_a_revised_final(tmp_path, recognizer, emotion):
    """A pause longer than the VAD tail but shorter than the hangover: the final goes out at the pause
    (early); speech resumes, and the utterance's next final has a higher revision and says what it revises."""
    from stream.asr import AsrConfig
    from stream.config import PipelineConfig
    from stream.sources import FileSource
    from stream.vad import VadConfig

    spoken = make_spoken_file(tmp_path / "pause.wav", gap_s=0.5)
    cfg = PipelineConfig(vad=VadConfig(hangover_ms=2000), asr=AsrConfig(partial_every_s=0))
    pipe, bus, _ = run_pipeline(cfg, FileSource(spoken), recognizer, emotion)
    pipe.streams[0].early_final = True  # what a live source gets; the file keeps the run deterministic
    assert pipe.run() == 0
    finals = bus.finals()
    assert [m["utterance_id"] for m in finals] == [0, 0], [m["transcript"] for m in finals]
    first, second = finals
    assert first["final_kind"] == "early" and first["revises"] is None
    assert second["revision"] > first["revision"] and second["revises"] == first["revision"]
    assert EXPECTED_WORDS[0] | EXPECTED_WORDS[1] <= words(second["transcript"])
    t_finals = [m for m in bus.of("transcript") if not m["partial"]]
    assert [m["revises"] for m in t_finals] == [None, first["revision"]]
    assert normalize(t_finals[1]["text"]).startswith(normalize(t_finals[0]["text"])), "words are not retracted"
    assert pipe.stats.early_finals == 2 and pipe.stats.revised_finals == 1 and pipe.stats.utterances == 1


@needs_speech
def test_several_sources_in_one_pipeline_have_their_own_ids_and_sequences(tmp_path, spoken, recognizer, emotion):
    from stream.config import PipelineConfig
    from stream.sources import FileSource

    one = make_spoken_file(tmp_path / "one.wav", sentences=("I am so happy to see you again",))
    cfg = PipelineConfig(stream_id="room")
    pipe, bus, events = run_pipeline(cfg, [FileSource(spoken), FileSource(one), FileSource(spoken)],
                                     recognizer, emotion)
    assert pipe.run() == 0
    ids = ["room-0", "room-1", "room-2"]
    assert {m["stream_id"] for _, m in bus.messages} == set(ids)
    for sid, n in zip(ids, (2, 1, 2)):
        finals = bus.finals(sid)
        assert [m["utterance_id"] for m in finals] == list(range(n)), sid
        for topic in ("emotion", "transcript", "status"):
            seqs = [m["seq"] for m in bus.of(topic, sid)]
            assert seqs == list(range(len(seqs))), (sid, topic)
        status = bus.of("status", sid)
        assert status[0]["kind"] == "start" and status[-1]["kind"] == "stop"
        assert status[-1]["counters"]["utterances"] == n
        assert {e.kind for e in events if e.stream_id == sid} >= {"source_start", "speech_end", "source_end"}
    assert EXPECTED_WORDS[1] <= words(bus.finals("room-1")[0]["transcript"])
    a, c = bus.finals("room-0"), bus.finals("room-2")  # the same audio gives the same result in any stream
    assert [m["transcript"] for m in a] == [m["transcript"] for m in c]
    np.testing.assert_allclose([m["confidence"] for m in a], [m["confidence"] for m in c], atol=1e-3)
    assert pipe.total_stats().utterances == 5


def test_shared_worker_takes_one_pass_per_stream_and_finals_before_partials():
    from stream.pipeline import WorkQueue
    from stream.vad import SpeechEnd, SpeechGrow, SpeechPause, Utterance

    a, b = object(), object()
    ua, ub = Utterance(0, 0, 0), Utterance(0, 0, 0)
    audio = np.zeros(160, np.int16)
    q = WorkQueue()
    q.put(a, SpeechGrow(ua, 160, 1, audio), 0.0)
    q.put(b, SpeechGrow(ub, 160, 1, audio), 0.0)
    q.put(b, SpeechPause(ub, 160, audio), 0.1)  # makes b's pending partial pointless
    q.put(a, SpeechGrow(ua, 320, 2, audio), 0.2)  # replaces a's older partial
    assert len(q) == 2 and q.coalesced == 2
    first = q.get_batch(8)
    assert [(s, type(ev).__name__) for s, ev, _ in first] == [(b, "SpeechPause")]  # the final goes first
    q.put(b, SpeechEnd(ub, 160, "silence", 1, audio), 0.3)
    q.put(a, SpeechEnd(ua, 320, "silence", 3, audio), 0.4)
    q.put(a, SpeechGrow(Utterance(1, 400, 400), 480, 1, audio), 0.5)
    assert [(s, type(ev).__name__) for s, ev, _ in q.get_batch(8)] == [(b, "SpeechEnd"), (a, "SpeechEnd")]
    assert [(s, type(ev).__name__) for s, ev, _ in q.get_batch(8)] == [(a, "SpeechGrow")]
    q.close()
    assert q.get_batch(8) is None


@needs_speech
def test_cli_takes_several_sources_as_separate_streams(tmp_path, spoken, ckpt):
    from tests.test_stream_support import Collector, free_endpoint, run_stream

    one = make_spoken_file(tmp_path / "one.wav", sentences=("I am so happy to see you again",))
    ep = free_endpoint()
    sub = Collector(ep)
    try:
        res = run_stream("--file", str(spoken), "--file", str(one), "--model", str(ckpt), "--endpoint", ep,
                         "--stream-id", "desk")
        sub.wait_for(lambda t, m: t == "status" and m["kind"] == "stop" and m["stream_id"] == "desk-1", 5)
    finally:
        sub.close()
    assert res.returncode == 0, res.stderr
    finals = sub.finals()
    assert sorted((m["stream_id"], m["utterance_id"]) for m in finals) == [("desk-0", 0), ("desk-0", 1),
                                                                           ("desk-1", 0)]
    assert "2 sources" in res.stderr and "2 streams" in res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 3 and {ln[:4] for ln in lines} == {"[0] ", "[1] "}
    for topic, msg in sub.messages:
        validate(topic, msg)
