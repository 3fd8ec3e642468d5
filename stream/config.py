"""Everything the run-time can be told, in one typed object (the CLI fills it; tests build it directly)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.asr import AsrConfig
from stream.emotion import EmotionConfig
from stream.publisher import DEFAULT_ENDPOINT
from stream.vad import VadConfig


@dataclass
class PipelineConfig:
    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    endpoint: str = DEFAULT_ENDPOINT
    sndhwm: int = 1000  # messages queued per subscriber before that subscriber loses messages
    heartbeat_s: float = 1.0
    partial_emotion: bool = True  # provisional emotion on every partial transcript
    # live sources: start the final pass when the pause is long enough to fix the utterance's audio,
    # before the hangover confirms the end (the work is thrown away if speech resumes)
    speculative: bool = True
    # live sources: publish the final as soon as the pause fixes the utterance's audio (final_kind "early");
    # if speech resumes within the hangover, a later final with a higher revision replaces it ("revises")
    early_final: bool = True
    # a file played as fast as possible: partial passes only when asked (nobody watches them in real time)
    fast_partials: bool = False
    agreement_passes: int = 2  # LocalAgreement-n: a word is committed once n consecutive partials agree
    stable_passes: int = 2  # a provisional emotion is "stable" once its label held for this many passes
    # ... and the latest pass gave it at least this calibrated probability: a "stable" label should hold at
    # least 4 times in 5 (at 0.6 the speaker-normalised demo model's early passes were stable and wrong)
    stable_confidence: float = 0.8
    max_batch: int = 8  # passes of different streams encoded together when they wait at the same time
    # live sources: partial passes may use at most this share of the time, so the worker is usually free
    # when an utterance ends (on a slow or busy CPU partials thin out instead of delaying the final)
    partial_duty: float = 0.5
    queue_seconds: float = 5.0  # audio the capture queue holds before dropping (live sources)
    stream_id: str | None = None
    stream_ids: list[str] | None = None  # one per source (default: stream_id, or stream_id-0, -1, ...)
    print_lines: bool = False  # also print human-readable lines to stdout
    print_partials: bool = False

    def validate(self) -> PipelineConfig:
        self.vad.validate()
        self.asr.validate()
        if self.heartbeat_s <= 0:
            raise ValueError("heartbeat interval must be > 0")
        if not 0 < self.partial_duty <= 1:
            raise ValueError("partial duty must be in (0, 1]")
        if self.queue_seconds <= 0:
            raise ValueError("queue length must be > 0 s")
        if self.agreement_passes < 1 or self.stable_passes < 1:
            raise ValueError("agreement and stability need at least 1 pass")
        if not 0 <= self.stable_confidence <= 1:
            raise ValueError("stable confidence must be in [0, 1]")
        if self.max_batch < 1:
            raise ValueError("max batch must be >= 1")
        if self.sndhwm < 1:
            raise ValueError("send high-water mark must be >= 1")
        return self
