"""The public message contract: builders, the JSON Schema files, and the human-readable rendering.

Every message is a ZeroMQ multipart [topic, json] with a schema id, the stream id, a sequence number
that counts per stream and per topic (a gap means the subscriber missed messages), times on the audio
clock (seconds since the stream started) and the wall time (Unix seconds). stream/schema/*.json is the
contract clients in other languages rely on; tests validate every message against it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from functools import cache
from pathlib import Path

SCHEMAS = {"emotion": "fdrl.emotion/4", "transcript": "fdrl.transcript/2", "status": "fdrl.status/2"}
FINAL_KINDS = ("early", "confirmed")
TOPICS = tuple(SCHEMAS)
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"


def new_stream_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


class MessageFactory:
    """Stamps messages with the header; one per stream, shared by the worker and the heartbeat thread."""

    def __init__(self, stream_id: str | None = None):
        self.stream_id = stream_id or new_stream_id()
        self.seq = dict.fromkeys(TOPICS, 0)
        self.lock = threading.Lock()

    def _header(self, topic: str) -> dict:
        with self.lock:
            seq = self.seq[topic]
            self.seq[topic] = seq + 1
        return {"schema": SCHEMAS[topic], "stream_id": self.stream_id, "seq": seq,
                "wall_time": round(time.time(), 3)}

    def transcript(self, *, utterance_id: int, start: float, end: float, partial: bool, revision: int,
                   text: str, reliable: bool, reason: str | None, no_speech_prob: float, avg_logprob: float,
                   asr_ms: float, committed: str | None = None, tentative: str = "", final_kind: str | None = None,
                   revises: int | None = None) -> dict:
        """committed: words that will not change any more (LocalAgreement; all of `text` in a final);
        tentative: the rest of `text`. final_kind/revises: see emotion()."""
        return {**self._header("transcript"), "utterance_id": utterance_id, "start": _r(start), "end": _r(end),
                "partial": partial, "revision": revision, "text": text, "reliable": reliable, "reason": reason,
                "no_speech_prob": _r(no_speech_prob, 4), "avg_logprob": _r(avg_logprob, 4),
                "asr_ms": _r(asr_ms, 1), "committed": text if committed is None else committed,
                "tentative": tentative, **_finality(partial, final_kind, revises)}

    def emotion(self, *, utterance_id: int, start: float, end: float, partial: bool, revision: int,
                transcript: str, text_used: bool, text_dropped: str | None, label: str, scores: dict[str, float],
                confidence: float, modalities: tuple[str, ...] | list[str], asr_ms: float, emotion_ms: float,
                eos_to_publish_ms: float | None, model: str, stable: bool | None = None,
                final_kind: str | None = None, revises: int | None = None, uncertain: bool = False,
                uncertain_reason: str | None = None, voice_end_to_publish_ms: float | None = None) -> dict:
        """voice_end_to_publish_ms: from the last voiced audio of the utterance to publishing, for paced
        (live) audio only: what a listener waits after they stop speaking.
        uncertain: the model should not be believed here (low calibrated confidence, or audio that is not
        speech-like); label and scores are still given, uncertain_reason says why.
        stable: a partial whose label held for the configured number of passes (finals: always true).
        final_kind (finals): "early" = published when the pause fixed the audio, before the hangover
        confirmed the end; "confirmed" = after it. revises: the revision of an earlier final of this
        utterance that this one replaces (speech resumed), else null."""
        return {**self._header("emotion"), "utterance_id": utterance_id, "start": _r(start), "end": _r(end),
                "partial": partial, "revision": revision, "transcript": transcript, "text_used": text_used,
                "text_dropped": text_dropped, "label": label,
                "scores": {k: _r(v, 4) for k, v in scores.items()}, "confidence": _r(confidence, 4),
                "modalities": list(modalities), "model": model,
                "latency_ms": {"asr": _r(asr_ms, 1), "emotion": _r(emotion_ms, 1),
                               "eos_to_publish": _r(eos_to_publish_ms, 1),
                               "voice_end_to_publish": _r(voice_end_to_publish_ms, 1)},
                "stable": (not partial) if stable is None else bool(stable or not partial),
                **_finality(partial, final_kind, revises),
                "uncertain": bool(uncertain), "uncertain_reason": uncertain_reason if uncertain else None}

    def status(self, *, kind: str, source: str, audio_time: float, uptime_s: float, counters: dict,
               rtf: float | None, rss_mb: float | None, latency_ms: dict | None = None, error: dict | None = None,
               device: dict | None = None, endpoint: str | None = None, curve: bool | None = None) -> dict:
        msg = {**self._header("status"), "kind": kind, "source": source, "audio_time": _r(audio_time),
               "uptime_s": _r(uptime_s), "counters": counters, "rtf": _r(rtf, 4), "rss_mb": _r(rss_mb, 1)}
        if endpoint is not None:
            msg["endpoint"] = endpoint
        if curve is not None:
            msg["curve"] = curve
        if latency_ms is not None:
            msg["latency_ms"] = latency_ms
        if error is not None:
            msg["error"] = error
        if device is not None:
            msg["device"] = device
        return msg


def _finality(partial: bool, final_kind: str | None, revises: int | None) -> dict:
    if partial:
        return {"final_kind": None, "revises": None}
    kind = final_kind or "confirmed"
    if kind not in FINAL_KINDS:
        raise ValueError(f"final_kind must be one of {FINAL_KINDS}, not {kind!r}")
    return {"final_kind": kind, "revises": revises}


def encode(msg: dict) -> bytes:
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@cache
def schema(topic: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{topic}.json").read_text())


@cache
def _validator(topic: str):
    from jsonschema import Draft202012Validator

    s = schema(topic)
    Draft202012Validator.check_schema(s)
    return Draft202012Validator(s)


def validate(topic: str, msg: dict) -> None:
    """Raise jsonschema.ValidationError when `msg` breaks the contract for `topic`."""
    if topic not in SCHEMAS:
        raise ValueError(f"unknown topic {topic!r}")
    _validator(topic).validate(msg)


# ---------------------------------------------------------------- human-readable lines


def _span(m: dict) -> str:
    return f"[{m['start']:.1f}-{m['end']:.1f} s]"


def format_emotion(m: dict) -> str:
    mods = "+".join(m["modalities"])
    text = f'"{m["transcript"]}"' if m["transcript"] else "(no words)"
    if not m["text_used"] and m["transcript"]:
        text += f" [text not used: {m['text_dropped']}]"
    if m["partial"]:
        stable = ", stable" if m.get("stable") else ""
        return f"  ~ {_span(m)} {m['label']} {m['confidence']:.2f}  {text}  (partial r{m['revision']}{stable}, {mods})"
    lat = m["latency_ms"].get("voice_end_to_publish")
    if lat is None:
        lat = m["latency_ms"].get("eos_to_publish")
    lat_s = f", {lat:.0f} ms" if lat is not None else ""
    rev = f", revises r{m['revises']}" if m.get("revises") is not None else ""
    label = f"{m['label'].upper()} {m['confidence']:.2f}"
    if m.get("uncertain"):  # the label is only a guess: say so before anything else
        label = f"UNCERTAIN ({m['label']}? {m['confidence']:.2f}: {m.get('uncertain_reason')})"
    return f"{_span(m)} {label}  {text}  ({mods}{lat_s}{rev})"


def format_transcript(m: dict) -> str:
    flag = "" if m["reliable"] else f"  [unreliable: {m['reason']}]"
    kind = f"partial r{m['revision']}" if m["partial"] else "final"
    if m["partial"] and m.get("tentative") and m.get("committed") is not None:
        return f"  … {_span(m)} \"{m['committed']} [{m['tentative']}]\"  ({kind}){flag}"
    return f"  … {_span(m)} \"{m['text']}\"  ({kind}){flag}"


def format_status(m: dict) -> str:
    c = m["counters"]
    rtf = f"{m['rtf']:.2f}" if m.get("rtf") is not None else "-"
    line = (f"status {m['kind']}: audio {m['audio_time']:.1f} s, utterances {c['utterances']}, "
            f"dropped audio {c['dropped_audio_frames']} frames, queue {c['queue_depth']}, rtf {rtf}, "
            f"errors {c['errors']}")
    if m.get("error"):
        e = m["error"]
        line += f"  ERROR (utterance {e.get('utterance_id')}, {e['stage']}): {e['message']}"
    return line


def format_line(topic: str, m: dict) -> str:
    return {"emotion": format_emotion, "transcript": format_transcript, "status": format_status}[topic](m)
