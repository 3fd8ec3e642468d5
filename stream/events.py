"""Pipeline events for observers (benchmarks, dashboards, tests): what happened, when, on which stream.

The bench and the dashboard need timestamps from inside the run-time (when the VAD decided, when a
pass started, when a message left). Subclassing the pipeline to get them couples every observer to
private methods; instead the pipeline calls `Observers.emit` at fixed points and anyone may listen.
Observers run on the pipeline's threads, so they must be quick; an observer that raises is reported
once and then ignored, never allowed to break the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# kind: when it is emitted (data keys)
KINDS = {
    "source_start": "the audio source delivered its first block (audio_t = its end; data: live, sample_rate)",
    "speech_start": "the VAD opened an utterance (audio_t = where speech starts)",
    "speech_pause": "the VAD saw the pause that fixes the utterance's audio unless speech resumes "
                    "(audio_t = end of the last voiced frame; data: end_t, where the kept audio ends)",
    "speech_end": "the VAD closed an utterance (audio_t = end of the last voiced frame; data: reason)",
    "pass_start": "an ASR/emotion pass began (data: final, speculative, samples)",
    "pass_end": "that pass finished (data: final, speculative, asr_ms, emotion_ms)",
    "published": "an emotion or transcript message left on the bus (data: topic, partial, revision, message)",
    "source_end": "the source ended or the run stopped (data: reason)",
}


@dataclass(frozen=True)
class PipelineEvent:
    kind: str
    stream_id: str
    t: float  # time.monotonic() when it happened
    utterance_id: int | None = None
    audio_t: float | None = None  # seconds on the stream's audio clock
    data: Mapping = field(default_factory=dict)


Observer = Callable[[PipelineEvent], None]


class Observers:
    """The pipeline's list of listeners."""

    def __init__(self, observers: list[Observer] | None = None, log=None):
        self.observers = list(observers or [])
        self.log = log or sys.stderr
        self._broken: set[int] = set()

    def add(self, observer: Observer) -> None:
        self.observers.append(observer)

    def __bool__(self) -> bool:
        return bool(self.observers)

    def emit(self, kind: str, stream_id: str, *, utterance_id: int | None = None, audio_t: float | None = None,
             t: float | None = None, **data) -> None:
        if not self.observers:
            return
        if kind not in KINDS:
            raise ValueError(f"unknown pipeline event kind {kind!r}")
        ev = PipelineEvent(kind, stream_id, time.monotonic() if t is None else t, utterance_id, audio_t, data)
        for i, obs in enumerate(self.observers):
            if i in self._broken:
                continue
            try:
                obs(ev)
            except Exception as e:  # an observer must never break the run
                self._broken.add(i)
                print(f"warning: observer {obs!r} failed ({type(e).__name__}: {e}); ignoring it from now on",
                      file=self.log)
