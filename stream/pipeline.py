"""The run-time loop: source -> VAD segmenter -> ASR (+ shared encoder frames) -> emotion -> publisher.

Live sources (microphone, paced file) run the segmenter and the recogniser in separate threads joined by a
work queue that coalesces stale work: a newer partial replaces a pending one, and an utterance's end makes
its pending partials pointless. The segmenter therefore always keeps up with the audio, and end-of-speech
is decided on time even while a pass is running. A file played as fast as possible runs everything in
one thread, in order, so its output is deterministic.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from fdrl_core.audio import SAMPLE_RATE
from stream.config import PipelineConfig
from stream.messages import MessageFactory, format_line
from stream.sources import AudioSource, SourceError, SourceRelease
from stream.tegrastats import snapshot as device_snapshot
from stream.vad import Segmenter, SpeechDiscard, SpeechEnd, SpeechGrow, SpeechPause, SpeechStart


def rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def percentile(xs, q: float) -> float | None:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if len(xs) else None


@dataclass
class Stats:
    utterances: int = 0
    partials: int = 0
    discarded: int = 0
    errors: int = 0
    audio_samples: int = 0
    busy_s: float = 0.0  # ASR + emotion compute
    eos_latency_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    speech_end_latency_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    partials_skipped: int = 0
    speculative_hits: int = 0
    speculative_misses: int = 0

    @property
    def audio_s(self) -> float:
        return self.audio_samples / SAMPLE_RATE

    @property
    def rtf(self) -> float | None:
        return self.busy_s / self.audio_s if self.audio_samples else None

    def latency(self) -> dict:
        xs = list(self.eos_latency_ms)
        med, p95 = percentile(xs, 50), percentile(xs, 95)
        return {"median": None if med is None else round(med, 1), "p95": None if p95 is None else round(p95, 1),
                "count": len(xs)}


class WorkQueue:
    """Events for the worker; stale partial/speculative work is dropped instead of queued."""

    def __init__(self):
        self.items: deque = deque()
        self.cv = threading.Condition()
        self.closed = False
        self.coalesced = 0

    def put(self, ev, t: float) -> None:
        with self.cv:
            if isinstance(ev, (SpeechGrow, SpeechPause, SpeechEnd, SpeechDiscard)):
                uid = ev.utt.id
                stale = (SpeechGrow,) if isinstance(ev, SpeechGrow) else (SpeechGrow, SpeechPause)
                keep = deque(x for x in self.items if not (isinstance(x[0], stale) and x[0].utt.id == uid))
                self.coalesced += len(self.items) - len(keep)
                self.items = keep
            self.items.append((ev, t))
            self.cv.notify()

    def get(self):
        with self.cv:
            while not self.items and not self.closed:
                self.cv.wait()
            return self.items.popleft() if self.items else None

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def __len__(self) -> int:
        return len(self.items)


class Pipeline:
    def __init__(self, cfg: PipelineConfig, source: AudioSource, recognizer, emotion, publisher,
                 out=None, log=None):
        self.cfg = cfg
        self.source = source
        self.recognizer = recognizer
        self.emotion = emotion
        self.publisher = publisher
        self.out = out or sys.stdout
        self.log = log or sys.stderr
        self.msgs = MessageFactory(cfg.stream_id)
        partial_ms = int(cfg.asr.partial_every_s * 1000)
        self.segmenter = Segmenter(cfg.vad, grow_every_ms=partial_ms or None)
        self.stats = Stats()
        self.live = source.live
        self.speculate = cfg.speculative and self.live
        self.work = WorkQueue() if self.live else None
        self.stop_requested = threading.Event()
        self.done = threading.Event()
        self.t_start = time.monotonic()
        self.t_source = None
        self.partial_clock: tuple[float, float | None] = (0.0, None)  # last partial: start, cost (s)
        self.spec = None  # (utterance id, end sample, Hypothesis, EmotionResult, emotion_ms)
        self.tegra = device_snapshot  # Jetson telemetry; returns None elsewhere
        self.source_error: str | None = None
        self.source_hung = False  # the source's stop()/close() did not return in time and was abandoned
        self.release = SourceRelease(source)  # stop + close with one deadline: a frozen driver cannot hang us
        self.status_lock = threading.Lock()

    # ------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Ctrl-C / SIGTERM: stop capturing; what was captured is still processed and published."""
        self.stop_requested.set()
        self.release.start()  # returns at once; frames() ends with what was captured

    def run(self) -> int:
        """Returns 0 when the input ended or a stop was requested, 1 when the source failed."""
        self._status("start")
        hb = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        hb.start()
        worker = None
        if self.live:
            worker = threading.Thread(target=self._worker, name="worker", daemon=True)
            worker.start()
        try:
            self.source.start()
            self.t_source = time.monotonic()
            self._segment()
        except SourceError as e:
            self.source_error = str(e)
            self._error(None, "source", str(e))
            for ev in self.segmenter.flush("stop"):
                self._dispatch(ev)
        finally:
            if self.work is not None:
                self.work.close()
                worker.join()
            self.done.set()
            hb.join(timeout=2 * self.cfg.heartbeat_s)
            if not self.release.wait():
                self.source_hung = True
            self._status("stop")
        return 1 if self.source_error else 0

    def _segment(self) -> None:
        seg = self.segmenter
        for frame in self.source.frames():
            self.stats.audio_samples = frame.end
            for ev in seg.push(frame.samples, frame.start):
                self._dispatch(ev)
        for ev in seg.flush("stop" if self.stop_requested.is_set() else "flush"):
            self._dispatch(ev)

    def _dispatch(self, ev) -> None:
        t = time.monotonic()
        if isinstance(ev, SpeechPause) and not self.speculate:
            return
        if isinstance(ev, SpeechStart):
            return
        if isinstance(ev, SpeechGrow) and self.live and not self._partial_due(t):
            self.stats.partials_skipped += 1
            return
        if self.work is not None:
            self.work.put(ev, t)
        else:
            self._handle(ev, t)

    def _partial_due(self, now: float) -> bool:
        """Duty-cycle cap: after a partial pass that took c seconds, wait c / partial_duty before the next."""
        started, cost = self.partial_clock
        return cost is None or now - started >= cost / self.cfg.partial_duty

    def _worker(self) -> None:
        while (item := self.work.get()) is not None:
            self._handle(*item)

    # ------------------------------------------------------------ work

    def _handle(self, ev, t_decided: float) -> None:
        stage = "asr"
        try:
            if isinstance(ev, SpeechDiscard):
                self.stats.discarded += 1
                self.spec = None
            elif isinstance(ev, SpeechGrow):
                t0 = time.monotonic()
                self.partial_clock = (t0, self.partial_clock[1])
                hyp = self._transcribe(ev.audio, final=False)
                self.stats.partials += 1
                self._publish_transcript(ev.utt, ev.end, hyp, partial=True, revision=ev.revision)
                if self.cfg.partial_emotion:
                    stage = "emotion"
                    result, emo_ms = self._classify(hyp)
                    self._publish_emotion(ev.utt, ev.end, hyp, result, emo_ms, True, ev.revision, None)
                self.partial_clock = (t0, time.monotonic() - t0)
            elif isinstance(ev, SpeechPause):
                self.spec = None
                try:
                    hyp = self._transcribe(ev.audio, final=True)
                    result, emo_ms = self._classify(hyp)
                    self.spec = (ev.utt.id, ev.end, hyp, result, emo_ms)
                except Exception:  # only a head start: the end of the utterance redoes it and reports
                    pass
            elif isinstance(ev, SpeechEnd):
                if self.spec is not None and self.spec[:2] == (ev.utt.id, ev.end):
                    _, _, hyp, result, emo_ms = self.spec
                    self.stats.speculative_hits += 1
                else:
                    if self.spec is not None:
                        self.stats.speculative_misses += 1
                    hyp = self._transcribe(ev.audio, final=True)
                    stage = "emotion"
                    result, emo_ms = self._classify(hyp)
                self.spec = None
                stage = "publish"
                self._publish_transcript(ev.utt, ev.end, hyp, partial=False, revision=ev.revision)
                self._publish_emotion(ev.utt, ev.end, hyp, result, emo_ms, False, ev.revision, t_decided)
        except Exception as e:  # one failing utterance is reported and the stream goes on
            self._error(ev.utt.id, stage, f"{type(e).__name__}: {e}")

    def _transcribe(self, audio: np.ndarray, final: bool):
        t0 = time.perf_counter()
        hyp = self.recognizer.transcribe(audio, final=final)
        self.stats.busy_s += time.perf_counter() - t0
        return hyp

    def _classify(self, hyp):
        t0 = time.perf_counter()
        result, ms = self.emotion.classify(hyp.frames, hyp.usable_text)
        self.stats.busy_s += time.perf_counter() - t0
        return result, ms

    # ------------------------------------------------------------ messages

    def _send(self, topic: str, msg: dict) -> None:
        self.publisher.send(topic, msg)
        if self.cfg.print_lines and self._printable(topic, msg):
            try:
                print(format_line(topic, msg), file=self.out, flush=True)
            except BrokenPipeError:  # `| head`: the reader left; messages are still published
                self.cfg.print_lines = False
                try:
                    os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
                except (OSError, ValueError):
                    pass
                print("stream: stdout was closed; lines are no longer printed (messages are still published)",
                      file=self.log, flush=True)

    def _printable(self, topic: str, msg: dict) -> bool:
        if topic == "emotion":
            return not msg["partial"] or self.cfg.print_partials
        return topic == "transcript" and msg["partial"] and self.cfg.print_partials

    def _publish_transcript(self, utt, end: int, hyp, partial: bool, revision: int) -> None:
        self._send("transcript", self.msgs.transcript(
            utterance_id=utt.id, start=utt.start / SAMPLE_RATE, end=end / SAMPLE_RATE, partial=partial,
            revision=revision, text=hyp.text, reliable=hyp.reliable, reason=hyp.reason,
            no_speech_prob=hyp.no_speech_prob, avg_logprob=min(0.0, hyp.avg_logprob), asr_ms=hyp.asr_ms))

    def _publish_emotion(self, utt, end: int, hyp, result, emo_ms: float, partial: bool, revision: int,
                         t_decided: float | None) -> None:
        text_used = "text" in result.modalities
        if text_used:
            dropped = None
        elif hyp.reliable:
            dropped = "the model does not use text"
        else:
            dropped = hyp.reason
        now = time.monotonic()
        eos_ms = None if t_decided is None else (now - t_decided) * 1000
        msg = self.msgs.emotion(
            utterance_id=utt.id, start=utt.start / SAMPLE_RATE, end=end / SAMPLE_RATE, partial=partial,
            revision=revision, transcript=hyp.text, text_used=text_used, text_dropped=dropped, label=result.label,
            scores=result.probs, confidence=result.confidence, modalities=tuple(result.modalities),
            asr_ms=hyp.asr_ms, emotion_ms=emo_ms, eos_to_publish_ms=eos_ms, model=self.emotion.name)
        self._send("emotion", msg)
        if not partial:
            self.stats.utterances += 1
            self.stats.eos_latency_ms.append(eos_ms)
            if self.live and self.t_source is not None:  # paced audio: audio clock ~ wall clock
                speech_end = self.t_source + utt.last_voiced_end / SAMPLE_RATE
                self.stats.speech_end_latency_ms.append(max(0.0, (now - speech_end) * 1000))

    def _error(self, utterance_id: int | None, stage: str, message: str) -> None:
        self.stats.errors += 1
        if stage != "source":  # a source failure ends the run; the caller reports it once, last
            print(f"stream: utterance {utterance_id} failed in {stage}: {message}" if utterance_id is not None
                  else f"stream: {message}", file=self.log, flush=True)
        self._status("error", error={"utterance_id": utterance_id, "stage": stage, "message": message[:500]})

    def counters(self) -> dict:
        return {"utterances": self.stats.utterances, "partials": self.stats.partials,
                "discarded": self.stats.discarded, "dropped_audio_frames": self.source.dropped_frames,
                "dropped_blocks": self.source.dropped_blocks, "input_overflows": self.source.overflows,
                "queue_depth": self.source.queue_depth(), "pending_work": len(self.work) if self.work else 0,
                "errors": self.stats.errors,
                "messages_sent": self.publisher.sent, "send_failures": self.publisher.failures}

    def _status(self, kind: str, error: dict | None = None) -> None:
        device = None
        if self.tegra is not None:
            try:
                device = self.tegra()
            except Exception:  # telemetry must never take the stream down
                device = None
        with self.status_lock:  # heartbeat, worker and main thread all report: keep seq in send order
            self._send_status(kind, error, device)

    def _send_status(self, kind: str, error: dict | None, device: dict | None) -> None:
        self._send("status", self.msgs.status(
            kind=kind, source=self.source.describe(), audio_time=self.stats.audio_s,
            uptime_s=time.monotonic() - self.t_start, counters=self.counters(), rtf=self.stats.rtf,
            rss_mb=rss_mb(), latency_ms=self.stats.latency(), error=error, device=device or None,
            endpoint=getattr(self.publisher, "endpoint", None), curve=getattr(self.publisher, "curve", None)))

    def _heartbeat(self) -> None:
        while not self.done.wait(self.cfg.heartbeat_s):
            self._status("heartbeat")

    # ------------------------------------------------------------ report

    def summary(self, wall_s: float) -> str:
        s = self.stats
        lat = s.latency()
        lines = [f"summary: {s.utterances} utterances from {s.audio_s:.1f} s of audio in {wall_s:.1f} s "
                 f"(processing RTF {s.rtf or 0:.2f}, wall RTF {wall_s / max(s.audio_s, 1e-9):.2f}), "
                 f"{s.partials} partial passes ({s.partials_skipped} skipped to keep up), "
                 f"dropped audio {self.source.dropped_frames} frames, "
                 f"errors {s.errors}, memory {rss_mb() or 0:.0f} MB"]
        if lat["count"]:
            lines.append(f"latency end-of-speech decision -> final emotion message: median {lat['median']:.0f} ms, "
                         f"p95 {lat['p95']:.0f} ms (n={lat['count']})")
        if s.speech_end_latency_ms:
            xs = list(s.speech_end_latency_ms)
            lines.append(f"latency last voiced frame -> final emotion message (includes the "
                         f"{self.cfg.vad.hangover_ms} ms hangover): median {percentile(xs, 50):.0f} ms, "
                         f"p95 {percentile(xs, 95):.0f} ms")
        if self.speculate:
            lines.append(f"speculative final passes: {s.speculative_hits} used, {s.speculative_misses} discarded")
        return "\n".join(lines)
