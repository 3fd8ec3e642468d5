"""What the dashboard remembers about each stream, so a page opened late (or reconnecting) sees the run so far.

Messages are kept as the JSON text the browser receives (encoded once, shared by every page). Per stream and
utterance we keep the newest final message and the newest message of each topic; per stream the first and the
newest status and the recent errors. Which of the kept messages wins is decided by the page (render.js) alone,
so that rule lives in one place. Memory is bounded: old utterances and idle streams are forgotten first.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from stream.messages import TOPICS


def item(topic: str, msg: dict, endpoint: str | None = None) -> str:
    """One message as the page receives it."""
    return json.dumps({"t": "msg", "topic": topic, "ep": endpoint, "m": msg}, ensure_ascii=False,
                      separators=(",", ":"))


def endpoint_item(endpoint: str, state: str, detail: str | None = None) -> str:
    return json.dumps({"t": "endpoint", "ep": endpoint, "state": state, "detail": detail}, separators=(",", ":"))


RESET = json.dumps({"t": "reset"})


@dataclass
class _Stream:
    utterances: OrderedDict = field(default_factory=OrderedDict)  # (uid) -> {(topic, final?): (n, item)}
    first_status: tuple[int, str] | None = None
    last_status: tuple[int, str] | None = None
    errors: deque = field(default_factory=lambda: deque(maxlen=50))


class StreamState:
    """Compact history of every stream seen. Not thread-safe: the owner serialises calls."""

    def __init__(self, max_utterances: int | None = 2000, max_streams: int = 64):
        self.max_utterances = max_utterances
        self.max_streams = max_streams
        self.streams: OrderedDict[str, _Stream] = OrderedDict()  # least recently active first
        self.endpoints: dict[str, str] = {}
        self.counter = itertools.count()
        self.ignored = 0  # messages that were not a stream message (wrong shape)

    def add(self, topic: str, msg: dict, endpoint: str | None = None) -> str | None:
        """Remember one message; returns its page item, or None when it is not a stream message."""
        sid = msg.get("stream_id") if isinstance(msg, dict) else None
        if topic not in TOPICS or not isinstance(sid, str) or not sid:
            self.ignored += 1
            return None
        text = item(topic, msg, endpoint)
        n = next(self.counter)
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = _Stream()
            while len(self.streams) > self.max_streams:
                self.streams.popitem(last=False)
        else:
            self.streams.move_to_end(sid)
        if topic == "status":
            if st.first_status is None:
                st.first_status = (n, text)
            st.last_status = (n, text)
            if msg.get("kind") == "error":
                st.errors.append((n, text))
            return text
        uid = msg.get("utterance_id")
        if not isinstance(uid, int):
            self.ignored += 1
            return None
        kept = st.utterances.get(uid)
        if kept is None:
            kept = st.utterances[uid] = {}
            while self.max_utterances and len(st.utterances) > self.max_utterances:
                st.utterances.popitem(last=False)
        kept[(topic, "latest")] = (n, text)
        if not msg.get("partial", False):
            kept[(topic, "final")] = (n, text)
        return text

    def set_endpoint(self, endpoint: str, state: str, detail: str | None = None) -> str:
        text = endpoint_item(endpoint, state, detail)
        self.endpoints[endpoint] = text
        return text

    def snapshot(self) -> list[str]:
        """The kept items in the order they arrived (duplicates removed)."""
        kept: dict[int, str] = {}
        for st in self.streams.values():
            for pair in (st.first_status, st.last_status, *st.errors):
                if pair:
                    kept[pair[0]] = pair[1]
            for per_utt in st.utterances.values():
                for n, text in per_utt.values():
                    kept[n] = text
        return list(self.endpoints.values()) + [kept[n] for n in sorted(kept)]

    def messages(self) -> list[tuple[str, dict]]:
        """The kept messages as (topic, message), in arrival order (for the report)."""
        out = []
        for text in self.snapshot():
            d = json.loads(text)
            if d["t"] == "msg":
                out.append((d["topic"], d["m"]))
        return out
