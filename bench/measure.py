"""Latency from the TRUE end of speech, for any system: what it said (final and partial texts or
messages, with arrival times) matched against the utterances of a generated stream (bench/truth.py).

The audio clock is tied to the wall clock by an origin: the time.monotonic() at which sample 0 would
have been captured by a microphone (paced audio). An utterance ending at `end_s` ended, for a listener,
at `origin + end_s`; its latency is the arrival of the first final that covers it minus that.

A final covers an utterance when (a) it carries an audio span (our messages: start/end) that overlaps the
utterance, or (b) without a span (a peer's text), its words match that utterance better than any other
(a text that merges two utterances covers both). Utterances no final covers are counted as missed.
A final with a span that stops well before the utterance's true end (an early final published at a
pause inside the sentence, later revised) does not end the utterance: the first final that reaches the
true end does.
Peers that commit word by word (LocalAgreement) give spans per piece; an utterance is final when the
last piece overlapping it arrived (`finals="last"`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field

from bench.common import summary
from bench.truth import TrueUtterance
from stream.events import PipelineEvent

_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def text_match(utterance_text: str, said: str) -> float:
    """Share of the utterance's distinct words found in `said` (0..1)."""
    u = set(words(utterance_text))
    return len(u & set(words(said))) / len(u) if u else 0.0


@dataclass(frozen=True)
class Said:
    """One output of a system: a final or partial text/message and when it reached the observer."""
    t: float  # time.monotonic() of arrival
    final: bool
    text: str = ""
    start_s: float | None = None  # audio span the system says it covers (None: unknown)
    end_s: float | None = None
    label: str | None = None  # emotion label, where the system gives one


@dataclass
class UtteranceResult:
    index: int
    text: str
    true_start_s: float
    true_end_s: float
    final_ms: float | None = None  # true end of speech -> first final covering it
    first_partial_ms: float | None = None  # true start of speech -> first partial of it
    final_text: str | None = None
    label: str | None = None
    merged: bool = False  # the final also covers another utterance
    match: float | None = None  # word match of the final text with the utterance


def _overlaps(s: Said, u: TrueUtterance, slack_s: float = 0.05) -> bool:
    return s.start_s is not None and s.end_s is not None and s.start_s < u.end_s + slack_s \
        and s.end_s > u.start_s - slack_s


def _piece_of(s: Said, u: TrueUtterance, slack_s: float = 0.5) -> bool:
    """A committed piece belongs to the utterance when it overlaps it (word times are approximate:
    `slack_s` either side) by at least half of the shorter of the two. A piece that starts at the end
    of one utterance and carries the next one's words (a line that grew across a silence) belongs to
    the next one only."""
    if s.start_s is None or s.end_s is None:
        return False
    ov = min(s.end_s, u.end_s + slack_s) - max(s.start_s, u.start_s - slack_s)
    return ov > 0 and ov >= 0.5 * min(max(s.end_s - s.start_s, 1e-3), u.end_s - u.start_s)


def _reaches_end(s: Said, u: TrueUtterance, slack_s: float = 0.3) -> bool:
    """A final whose audio span reaches the utterance's true end (unknown span: assumed to)."""
    return s.end_s is None or s.end_s >= u.end_s - slack_s


def _covers(s: Said, u: TrueUtterance, utts: list[TrueUtterance], origin: float, min_match: float) -> bool:
    if s.start_s is not None:
        return _overlaps(s, u)
    if s.t < origin + u.start_s:  # nothing can be said before the speech started
        return False
    score = text_match(u.text, s.text)
    if score < min_match:
        return False
    started = [v for v in utts if s.t >= origin + v.start_s]
    best = max(text_match(v.text, s.text) for v in started)
    return score >= best or score >= 0.6  # the best match, or clearly this one too (a merged final)


def match(utts: list[TrueUtterance], said: list[Said], origin: float, min_match: float = 0.3,
          finals: str = "first") -> list[UtteranceResult]:
    """Per true utterance: latency of its final and of its first output (partial or final).

    finals="first": the first final covering the utterance (one final per utterance: ours, RealtimeSTT).
    finals="last": finals are pieces with audio spans (committed words or segments, as LocalAgreement
    peers give them); the utterance is final once the LAST piece overlapping it arrived."""
    said = sorted(said, key=lambda s: s.t)
    fin = [s for s in said if s.final]
    partials = [s for s in said if s.text.strip() or s.start_s is not None]
    out = []
    for u in utts:
        r = UtteranceResult(u.index, u.text, u.start_s, u.end_s)
        if finals == "last":
            pieces = [s for s in fin if _piece_of(s, u)]
            f = pieces[-1] if pieces else None
            text = " ".join(s.text.strip() for s in sorted(pieces, key=lambda s: s.start_s)) if pieces else None
            merged = any(_piece_of(s, v) for s in pieces for v in utts if v.index != u.index)
        else:
            covering = [s for s in fin if _covers(s, u, utts, origin, min_match)]
            f = next((s for s in covering if _reaches_end(s, u)), covering[-1] if covering else None)
            text = f.text if f is not None else None
            merged = f is not None and any(_covers(f, v, utts, origin, min_match) for v in utts if v.index != u.index)
        if f is not None:
            r.final_ms = round((f.t - (origin + u.end_s)) * 1000, 1)
            r.final_text, r.label, r.merged = text, f.label, merged
            r.match = round(text_match(u.text, text or ""), 3)
        limit = f.t if f is not None else float("inf")
        p = next((s for s in partials if origin + u.start_s < s.t <= limit
                  and (_piece_of(s, u) if finals == "last" and s.final
                       else _covers(s, u, utts, origin, min_match=0.01))), None)
        if p is not None:
            r.first_partial_ms = round((p.t - (origin + u.start_s)) * 1000, 1)
        out.append(r)
    return out


def summarize(results: list[UtteranceResult], cpu_s: float | None, audio_s: float) -> dict:
    """The numbers a table shows: final and first-partial latency, misses, CPU seconds per audio minute."""
    finals = [r.final_ms for r in results if r.final_ms is not None]
    return {
        "utterances": len(results),
        "finals": len(finals),
        "missed": sum(r.final_ms is None for r in results),
        "merged": sum(r.merged for r in results),
        "final_ms": summary(finals),
        "first_partial_ms": summary(r.first_partial_ms for r in results),
        "word_match": summary(r.match for r in results),
        "cpu_s": None if cpu_s is None else round(cpu_s, 2),
        "audio_s": round(audio_s, 2),
        "cpu_s_per_audio_min": None if cpu_s is None or not audio_s else round(cpu_s / audio_s * 60, 2),
        "per_utterance": [asdict(r) for r in results],
    }


# ------------------------------------------------------------------------------------------ observers


@dataclass
class EventLog:
    """An Observer (stream/events.py) that keeps every event, thread-safely, for the analysis below."""
    events: list[PipelineEvent] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()

    def __call__(self, ev: PipelineEvent) -> None:
        with self._lock:
            self.events.append(ev)

    def snapshot(self, stream_id: str | None = None) -> list[PipelineEvent]:
        with self._lock:
            return [e for e in self.events if stream_id is None or e.stream_id == stream_id]

    def origin(self, stream_id: str | None = None) -> float | None:
        """Wall time of audio sample 0: the first block arrived at `t`, carrying audio up to `audio_t`."""
        ev = next((e for e in self.snapshot(stream_id) if e.kind == "source_start"), None)
        return None if ev is None else ev.t - (ev.audio_t or 0.0)

    def said(self, stream_id: str | None = None) -> list[Said]:
        """Final emotion messages and partial transcripts as the pipeline published them."""
        out = []
        for e in self.snapshot(stream_id):
            if e.kind != "published":
                continue
            m = e.data.get("message") or {}
            topic, partial = e.data.get("topic"), bool(e.data.get("partial"))
            if (topic == "emotion" and not partial) or (topic == "transcript" and partial):
                out.append(said_from_message(e.t, topic, m))
        return out

    def decisions(self, stream_id: str | None = None) -> dict[int, PipelineEvent]:
        return {e.utterance_id: e for e in self.snapshot(stream_id) if e.kind == "speech_end"}


def said_from_message(t: float, topic: str, m: dict) -> Said:
    """A published emotion/transcript message as a Said (final emotions; partial transcripts)."""
    text = m.get("transcript") if topic == "emotion" else m.get("text")
    return Said(t, not m.get("partial", False), text or "", m.get("start"), m.get("end"),
                m.get("label") if topic == "emotion" else None)


def vad_breakdown(results: list[UtteranceResult], log: EventLog, stream_id: str | None, origin: float,
                  received: dict[int, float] | None = None) -> dict:
    """Where the time between the true end and the final goes, from the pipeline's events: true end -> the
    end of voice the VAD found (audio clock), true end -> the pause that fixes the audio (wall clock),
    pause -> final emotion published (the final pass), published -> a subscriber has it; and, for
    reference, true end -> the VAD's end-of-speech decision (after the hangover, which an early final
    does not wait for)."""
    evs = log.snapshot(stream_id)
    ends = {e.utterance_id: e for e in evs if e.kind == "speech_end"}
    pauses: dict[int, list] = {}
    for e in evs:
        if e.kind == "speech_pause":
            pauses.setdefault(e.utterance_id, []).append(e)
    published: dict[int, list[float]] = {}
    for e in evs:
        if e.kind == "published" and e.data.get("topic") == "emotion" and not e.data.get("partial"):
            published.setdefault(e.utterance_id, []).append(e.t)
    voice_end, to_pause, pause_to_pub, to_decision, pub_to_recv = [], [], [], [], []
    for uid, d in ends.items():
        if d.audio_t is None:
            continue
        u = min(results, key=lambda r: abs(r.true_end_s - d.audio_t), default=None)
        if u is None or abs(u.true_end_s - d.audio_t) > 1.0:  # a VAD end that is no true end (a split)
            continue
        true_end = origin + u.true_end_s
        to_decision.append((d.t - true_end) * 1000)
        p = next((p for p in reversed(pauses.get(uid, [])) if abs(p.audio_t - d.audio_t) < 1e-3), None)
        if p is not None:  # the pause at the utterance's real end (not one inside it that speech ended)
            voice_end.append((p.audio_t - u.true_end_s) * 1000)
            to_pause.append((p.t - true_end) * 1000)
        pub = [t for t in published.get(uid, []) if p is None or t >= p.t]
        if pub:
            if p is not None:
                pause_to_pub.append((pub[0] - p.t) * 1000)
            if received and uid in received:
                pub_to_recv.append((received[uid] - pub[0]) * 1000)
    return {"true_end_to_voice_end_ms": summary(voice_end),
            "true_end_to_pause_ms": summary(to_pause),
            "pause_to_published_ms": summary(pause_to_pub),
            "published_to_received_ms": summary(pub_to_recv),
            "true_end_to_vad_decision_ms": summary(to_decision)}
