"""The run-time loop: sources -> VAD segmenters -> ASR (+ shared encoder frames) -> emotion -> publisher.

One process serves one or several streams (microphones and/or files) with ONE recogniser and ONE emotion
model. Every stream has its own segmenter thread, message factory (stream id, sequence numbers), counters
and status messages; a single worker runs the passes of all streams and encodes passes that are waiting
at the same time in one batch. The work queue coalesces stale work: a newer partial replaces a pending
one, and an utterance's end makes its pending partials pointless, so segmenters always keep up with the
audio and end-of-speech is decided on time even while a pass is running.

Latency: on live sources the final is published as soon as the pause is long enough to fix the
utterance's audio (`SpeechPause`, an "early" final), not after the whole hangover; if speech resumes
within the hangover, the utterance goes on and its next final carries a higher revision and `revises`.
A single file played as fast as possible runs in one thread, in order (deterministic output), with no
partial passes unless asked (nobody watches them).

Observers (stream.events) see source_start, speech_start, speech_end, pass_start, pass_end, published
and source_end, with timestamps, for every stream.
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
from fdrl_core.speech_frontend import WindowPolicy, window_for_export, window_for_model
from stream.asr import LocalAgreement
from stream.config import PipelineConfig
from stream.events import Observers
from stream.messages import MessageFactory, format_line, new_stream_id
from stream.sources import AudioSource, SourceError, SourceRelease
from stream.tegrastats import snapshot as device_snapshot
from stream.vad import Segmenter, SpeechDiscard, SpeechEnd, SpeechGrow, SpeechPause, SpeechStart


def rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def model_window(emotion) -> WindowPolicy | None:
    """The encoder window policy of the model the emotion stage actually runs: an ONNX graph or engine
    (the backend's sidecar; a checkpoint folder given as the model may hold its ONNX export in onnx/)
    or a checkpoint (meta.json). None when the stage does not say what it loaded."""
    path = getattr(emotion, "model_path", None)
    if path is None:
        return None
    sidecar = getattr(getattr(emotion, "backend", None), "sidecar", None)
    if sidecar is not None:
        src = getattr(sidecar, "source_checkpoint", "") or ""
        base = path if path.is_dir() else path.parent
        candidates = [base] + ([base / src] if src else [])  # only one with the exported weights counts
        return window_for_export(getattr(sidecar, "extra", None) or {}, getattr(sidecar, "checkpoint_sha256", ""),
                                 [c for c in candidates if c.is_dir()])
    return window_for_model(path)


def percentile(xs, q: float) -> float | None:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if len(xs) else None


@dataclass
class Stats:
    utterances: int = 0
    partials: int = 0
    discarded: int = 0
    errors: int = 0
    audio_samples: int = 0
    busy_s: float = 0.0  # ASR + emotion compute (a batched pass is shared among its streams)
    eos_latency_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    speech_end_latency_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    partials_skipped: int = 0
    speculative_hits: int = 0
    speculative_misses: int = 0
    early_finals: int = 0  # finals published at the pause, before the hangover confirmed the end
    revised_finals: int = 0  # finals that replaced an earlier final of the same utterance (speech resumed)
    batched_passes: int = 0  # passes that shared an encoder call with another stream's

    @property
    def audio_s(self) -> float:
        return self.audio_samples / SAMPLE_RATE

    @property
    def rtf(self) -> float | None:
        return self.busy_s / self.audio_s if self.audio_samples else None

    def latency(self) -> dict:
        """From the end-of-speech decision; with `voice_end` from the last voiced audio (live audio only)."""
        out = _percentiles(self.eos_latency_ms)
        if self.speech_end_latency_ms:
            out["voice_end"] = _percentiles(self.speech_end_latency_ms)
        return out


def _percentiles(values) -> dict:
    xs = list(values)
    med, p95 = percentile(xs, 50), percentile(xs, 95)
    return {"median": None if med is None else round(med, 1), "p95": None if p95 is None else round(p95, 1),
            "count": len(xs)}


class WorkQueue:
    """Events for the worker, tagged with their stream; stale partial/speculative work is dropped instead
    of queued. A non-live producer (a file read as fast as possible) waits when `limit` items are queued."""

    def __init__(self, limit: int = 64):
        self.items: deque = deque()
        self.cv = threading.Condition()
        self.closed = False
        self.coalesced = 0
        self.limit = limit

    def put(self, stream, ev, t: float, block: bool = False) -> None:
        with self.cv:
            while block and len(self.items) >= self.limit and not self.closed:
                self.cv.wait(0.1)
            if isinstance(ev, (SpeechGrow, SpeechPause, SpeechEnd, SpeechDiscard)):
                uid = ev.utt.id
                stale = (SpeechGrow,) if isinstance(ev, SpeechGrow) else (SpeechGrow, SpeechPause)
                keep = deque(x for x in self.items
                             if not (x[0] is stream and isinstance(x[1], stale) and x[1].utt.id == uid))
                self.coalesced += len(self.items) - len(keep)
                self.items = keep
            self.items.append((stream, ev, t))
            self.cv.notify_all()

    def get_batch(self, max_items: int) -> list | None:
        """Up to `max_items` items, at most one per stream (a stream's own events stay in order), ends and
        pauses before partials: a final someone waits for goes first. None once closed and empty."""
        with self.cv:
            while not self.items and not self.closed:
                self.cv.wait()
            if not self.items:
                return None
            # a pending partial is never older than an end of the same utterance (the end removes it)
            urgent = any(not isinstance(x[1], SpeechGrow) for x in self.items)
            batch, seen, rest = [], set(), deque()
            for item in self.items:
                if urgent and isinstance(item[1], SpeechGrow):
                    rest.append(item)
                elif len(batch) < max_items and id(item[0]) not in seen:
                    seen.add(id(item[0]))
                    batch.append(item)
                else:
                    rest.append(item)
            self.items = rest
            self.cv.notify_all()
            return batch

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class UttState:
    """What the worker knows about one utterance of one stream."""
    revision: int = 0  # of the last message published about it
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    label: str | None = None  # provisional label and how many passes in a row gave it
    label_runs: int = 0
    final_end: int | None = None  # end sample of the last final published, and its revision
    final_revision: int | None = None
    spec: tuple | None = None  # (end, Hypothesis, EmotionResult, emotion_ms): speculative final pass


class Stream:
    """One audio source and everything that is per stream: segmenter, ids and sequence numbers, counters."""

    def __init__(self, pipeline: Pipeline, source: AudioSource, stream_id: str, index: int):
        cfg = pipeline.cfg
        self.pipeline = pipeline
        self.source = source
        self.index = index
        self.msgs = MessageFactory(stream_id)
        self.stream_id = self.msgs.stream_id
        self.live = source.live
        partials = cfg.asr.partial_every_s > 0 and (self.live or cfg.fast_partials)
        self.segmenter = Segmenter(cfg.vad, grow_every_ms=int(cfg.asr.partial_every_s * 1000) if partials else None,
                                   first_grow_ms=int(cfg.asr.first_partial_s * 1000) or None)
        self.stats = Stats()
        self.speculate = cfg.speculative and self.live
        self.early_final = cfg.early_final and self.live
        self.utts: dict[int, UttState] = {}
        # speech_norm="speaker" models: running statistics of this stream's voice (None for other models)
        state = getattr(pipeline.emotion, "speaker_state", None)
        self.speaker = state() if state else None
        self.t_source: float | None = None
        self.source_error: str | None = None
        self.status_lock = threading.Lock()

    def utt(self, uid: int) -> UttState:
        st = self.utts.get(uid)
        if st is None:
            st = self.utts[uid] = UttState(agreement=LocalAgreement(self.pipeline.cfg.agreement_passes))
            while len(self.utts) > 32:  # old utterances are done
                self.utts.pop(next(iter(self.utts)))
        return st

    def next_revision(self, uid: int) -> int:
        st = self.utt(uid)
        st.revision += 1
        return st.revision


class Pipeline:
    """`sources`: one AudioSource or a list (one stream each). `observers`: callables receiving
    stream.events.PipelineEvent (or an Observers object)."""

    def __init__(self, cfg: PipelineConfig, sources: AudioSource | list[AudioSource], recognizer, emotion,
                 publisher, out=None, log=None, observers=None):
        self.cfg = cfg
        self.recognizer = recognizer
        window = model_window(emotion)
        if window is not None and hasattr(recognizer, "window"):
            # encode with the window policy the emotion model was trained with (legacy models: 30 s)
            recognizer.window = window
        self.emotion = emotion
        self.publisher = publisher
        self.out = out or sys.stdout
        self.log = log or sys.stderr
        self.observers = observers if isinstance(observers, Observers) else Observers(observers, log=self.log)
        srcs = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        if not srcs:
            raise ValueError("the pipeline needs at least one audio source")
        base = cfg.stream_id or new_stream_id()
        ids = cfg.stream_ids or ([base] if len(srcs) == 1 else [f"{base}-{i}" for i in range(len(srcs))])
        if len(ids) != len(srcs) or len(set(ids)) != len(ids):
            raise ValueError("stream ids must be unique, one per source")
        self.streams = [Stream(self, s, sid, i) for i, (s, sid) in enumerate(zip(srcs, ids))]
        self.inline = len(self.streams) == 1 and not self.streams[0].live  # one fast file: one thread, in order
        self.work = None if self.inline else WorkQueue()
        self.stop_requested = threading.Event()
        self.done = threading.Event()
        self.t_start = time.monotonic()
        self.partial_clock: tuple[float, float | None] = (0.0, None)  # last partial: start, cost (s)
        self.tegra = device_snapshot  # Jetson telemetry; returns None elsewhere
        self.t_source = None
        # stop + close of every source with one deadline: a frozen driver cannot hang the stop
        self.releases = [SourceRelease(st.source) for st in self.streams]
        self.source_hung = False  # a source's stop()/close() did not return in time and was abandoned

    # ------------------------------------------------------------ single-stream views (API of one stream)

    @property
    def source(self) -> AudioSource:
        return self.streams[0].source

    @property
    def stats(self) -> Stats:
        return self.streams[0].stats if len(self.streams) == 1 else self.total_stats()

    @property
    def msgs(self) -> MessageFactory:
        return self.streams[0].msgs

    @property
    def source_error(self) -> str | None:
        errors = [f"{s.stream_id}: {s.source_error}" if len(self.streams) > 1 else s.source_error
                  for s in self.streams if s.source_error]
        return "; ".join(errors) or None

    def total_stats(self) -> Stats:
        t = Stats()
        for s in self.streams:
            for name in ("utterances", "partials", "discarded", "errors", "audio_samples", "busy_s",
                         "partials_skipped", "speculative_hits", "speculative_misses", "early_finals",
                         "revised_finals", "batched_passes"):
                setattr(t, name, getattr(t, name) + getattr(s.stats, name))
            t.eos_latency_ms.extend(s.stats.eos_latency_ms)
            t.speech_end_latency_ms.extend(s.stats.speech_end_latency_ms)
        return t

    # ------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Ctrl-C / SIGTERM: stop capturing; what was captured is still processed and published."""
        self.stop_requested.set()
        for r in self.releases:
            r.start()  # returns at once; frames() ends with what was captured

    def run(self) -> int:
        """Returns 0 when the inputs ended or a stop was requested, 1 when a source failed."""
        for s in self.streams:
            self._status(s, "start")
        hb = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        hb.start()
        worker = None
        if self.work is not None:
            worker = threading.Thread(target=self._worker, name="worker", daemon=True)
            worker.start()
        try:
            if self.inline:
                self._segment(self.streams[0])
            else:
                threads = [threading.Thread(target=self._segment, args=(s,), name=f"segmenter-{s.index}",
                                            daemon=True) for s in self.streams]
                for t in threads:
                    t.start()
                for t in threads:
                    while t.is_alive():
                        t.join(0.2)
        finally:
            if self.work is not None:
                self.work.close()
                worker.join()
            self.done.set()
            hb.join(timeout=2 * self.cfg.heartbeat_s)
            for r in self.releases:
                r.start()
            for s, r in zip(self.streams, self.releases):
                if not r.wait():
                    self.source_hung = True
                self._status(s, "stop")
        return 1 if self.source_error else 0

    def _segment(self, s: Stream) -> None:
        seg = s.segmenter
        reason = "end"
        try:
            s.source.start()
            s.t_source = time.monotonic()
            if self.t_source is None:
                self.t_source = s.t_source
            for frame in s.source.frames():
                if not s.stats.audio_samples:  # t - audio_t: where the audio clock started
                    self.observers.emit("source_start", s.stream_id, audio_t=frame.end / SAMPLE_RATE, live=s.live,
                                        sample_rate=SAMPLE_RATE)
                s.stats.audio_samples = frame.end
                for ev in seg.push(frame.samples, frame.start):
                    self._dispatch(s, ev)
            flush = "stop" if self.stop_requested.is_set() else "flush"
            reason = "stop" if flush == "stop" else "end"
        except SourceError as e:
            s.source_error = str(e)
            reason = "error"
            self._error(s, None, "source", str(e))
            flush = "stop"
        for ev in seg.flush(flush):
            self._dispatch(s, ev)
        self.observers.emit("source_end", s.stream_id, audio_t=s.stats.audio_s, reason=reason)

    def _dispatch(self, s: Stream, ev) -> None:
        t = time.monotonic()
        if isinstance(ev, SpeechStart):
            self.observers.emit("speech_start", s.stream_id, utterance_id=ev.utt.id, t=t,
                                audio_t=ev.utt.onset / SAMPLE_RATE)
            return
        if isinstance(ev, SpeechEnd):
            self.observers.emit("speech_end", s.stream_id, utterance_id=ev.utt.id, t=t,
                                audio_t=ev.utt.last_voiced_end / SAMPLE_RATE, reason=ev.reason)
        if isinstance(ev, SpeechPause):
            self.observers.emit("speech_pause", s.stream_id, utterance_id=ev.utt.id, t=t,
                                audio_t=ev.utt.last_voiced_end / SAMPLE_RATE, end_t=ev.end / SAMPLE_RATE)
            if not (s.speculate or s.early_final):
                return
        if isinstance(ev, SpeechGrow) and s.live and not self._partial_due(t):
            s.stats.partials_skipped += 1
            return
        if self.work is not None:
            self.work.put(s, ev, t, block=not s.live)
        else:
            self._handle_batch([(s, ev, t)])

    def _partial_due(self, now: float) -> bool:
        """Duty-cycle cap: after a partial pass that took c seconds, wait c / partial_duty before the next
        (across all streams: the worker is shared)."""
        started, cost = self.partial_clock
        return cost is None or now - started >= cost / self.cfg.partial_duty

    def _worker(self) -> None:
        while (batch := self.work.get_batch(self.cfg.max_batch)) is not None:
            self._handle_batch(batch)

    # ------------------------------------------------------------ work

    def _needs_pass(self, s: Stream, ev) -> tuple[bool, str] | None:
        """(final, prefix) when `ev` needs an ASR pass, None when it needs none."""
        if isinstance(ev, SpeechGrow):
            if s.live and ev.utt.end - ev.utt.last_voiced_end >= s.segmenter.cfg.tail_ms * SAMPLE_RATE // 1000:
                return None  # the utterance is pausing: its final pass is due, a partial would only delay it
            return False, s.utt(ev.utt.id).agreement.committed_text
        if isinstance(ev, SpeechPause):
            vad = s.segmenter.cfg
            if self._resumed(s, ev) or ev.utt.last_voiced_end - ev.utt.onset < vad.min_speech_ms * SAMPLE_RATE // 1000:
                return None  # speech came back, or too short: the segmenter will discard it unless it grows
            return True, s.utt(ev.utt.id).agreement.committed_text
        if isinstance(ev, SpeechEnd):
            st = s.utt(ev.utt.id)
            if st.final_end == ev.end or (st.spec is not None and st.spec[0] == ev.end):
                return None  # already published early, or the speculative pass has it
            return True, st.agreement.committed_text
        return None

    def _resumed(self, s: Stream, ev: SpeechPause) -> bool:
        """Speech came back after the pause was decided (the utterance's audio is not final after all)."""
        return ev.utt.last_voiced_end + s.segmenter.cfg.tail_ms * SAMPLE_RATE // 1000 != ev.end

    def _handle_batch(self, batch: list) -> None:
        jobs, reqs = [], []
        for s, ev, t in batch:
            need = self._needs_pass(s, ev)
            if need is not None:
                jobs.append((s, ev, t))
                reqs.append((ev.audio, need[0], need[1]))
        hyps: dict[int, object] = {}
        t_partial = time.monotonic() if any(isinstance(ev, SpeechGrow) for _, ev, _ in jobs) else None
        if reqs:
            t0 = time.perf_counter()
            for s, ev, _ in jobs:
                self.observers.emit("pass_start", s.stream_id, utterance_id=ev.utt.id, audio_t=ev.end / SAMPLE_RATE,
                                    final=not isinstance(ev, SpeechGrow), speculative=isinstance(ev, SpeechPause),
                                    samples=len(ev.audio))
            try:
                results = self.recognizer.transcribe_many(reqs)
            except Exception as e:  # one failing pass fails its utterances; the streams go on
                results = [e] * len(reqs)
                if len(reqs) > 1:  # retry one by one, so one bad utterance does not take the others
                    results = []
                    for r in reqs:
                        try:
                            results.append(self.recognizer.transcribe_many([r])[0])
                        except Exception as e1:
                            results.append(e1)
            cost = time.perf_counter() - t0
            for (s, ev, _), hyp in zip(jobs, results):
                hyps[id(ev)] = hyp
                s.stats.busy_s += cost / len(jobs)
                if len(jobs) > 1:
                    s.stats.batched_passes += 1
        for s, ev, t in batch:
            self._handle(s, ev, t, hyps.get(id(ev)))
        if t_partial is not None:
            self.partial_clock = (t_partial, time.monotonic() - t_partial)

    def _handle(self, s: Stream, ev, t_decided: float, hyp) -> None:
        stage = "asr"
        try:
            if isinstance(hyp, Exception):
                raise hyp
            if isinstance(ev, SpeechDiscard):
                s.stats.discarded += 1
                s.utts.pop(ev.utt.id, None)
            elif isinstance(ev, SpeechGrow):
                if hyp is None:
                    s.stats.partials_skipped += 1
                    return
                self._partial(s, ev, hyp)
            elif isinstance(ev, SpeechPause):
                if hyp is None:
                    return
                stage = "emotion"
                result, emo_ms = self._classify(s, hyp)
                self._pass_end(s, ev, hyp, emo_ms, final=True, speculative=True)
                st = s.utt(ev.utt.id)
                if s.early_final and not self._resumed(s, ev):
                    stage = "publish"
                    self._final(s, ev.utt, ev.end, hyp, result, emo_ms, t_decided, kind="early")
                else:
                    st.spec = (ev.end, hyp, result, emo_ms)
            elif isinstance(ev, SpeechEnd):
                st = s.utt(ev.utt.id)
                if st.final_end == ev.end:  # the early final stands: the hangover confirmed it
                    s.stats.speculative_hits += 1
                    s.utts.pop(ev.utt.id, None)
                    return
                if hyp is None and st.spec is not None and st.spec[0] == ev.end:
                    _, hyp, result, emo_ms = st.spec
                    s.stats.speculative_hits += 1
                else:
                    if st.spec is not None or st.final_end is not None:
                        s.stats.speculative_misses += 1
                    stage = "emotion"
                    result, emo_ms = self._classify(s, hyp)
                    self._pass_end(s, ev, hyp, emo_ms, final=True, speculative=False)
                stage = "publish"
                self._final(s, ev.utt, ev.end, hyp, result, emo_ms, t_decided, kind="confirmed")
                s.utts.pop(ev.utt.id, None)
        except Exception as e:  # one failing utterance is reported and the stream goes on
            self._error(s, ev.utt.id, stage, f"{type(e).__name__}: {e}")

    def _partial(self, s: Stream, ev: SpeechGrow, hyp) -> None:
        st = s.utt(ev.utt.id)
        s.stats.partials += 1
        committed, tentative = st.agreement.update(hyp.text)
        emo = None
        if self.cfg.partial_emotion:
            result, emo_ms = self._classify(s, hyp)
            if result.label == st.label:
                st.label_runs += 1
            else:
                st.label, st.label_runs = result.label, 1
            stable = st.label_runs >= self.cfg.stable_passes and result.confidence >= self.cfg.stable_confidence
            emo = (result, emo_ms, stable)
        self._pass_end(s, ev, hyp, emo[1] if emo else 0.0, final=False, speculative=False)
        rev = s.next_revision(ev.utt.id)
        self._publish_transcript(s, ev.utt, ev.end, hyp, partial=True, revision=rev, committed=committed,
                                 tentative=tentative)
        if emo is not None:
            self._publish_emotion(s, ev.utt, ev.end, hyp, emo[0], emo[1], True, rev, None, stable=emo[2])

    def _final(self, s: Stream, utt, end: int, hyp, result, emo_ms: float, t_decided: float, kind: str) -> None:
        st = s.utt(utt.id)
        revises = st.final_revision
        rev = s.next_revision(utt.id)
        self._publish_transcript(s, utt, end, hyp, partial=False, revision=rev, committed=hyp.text, tentative="",
                                 final_kind=kind, revises=revises)
        self._publish_emotion(s, utt, end, hyp, result, emo_ms, False, rev, t_decided, stable=True,
                              final_kind=kind, revises=revises)
        st.final_end, st.final_revision = end, rev
        if s.speaker is not None:  # a revised final of the same utterance replaces its earlier commit
            s.speaker.commit(hyp.frames, key=utt.id)
        if kind == "early":
            s.stats.early_finals += 1
            st.agreement.commit(hyp.text)  # should speech resume, the next final starts with these words
        if revises is not None:
            s.stats.revised_finals += 1

    def _pass_end(self, s: Stream, ev, hyp, emo_ms: float, final: bool, speculative: bool) -> None:
        self.observers.emit("pass_end", s.stream_id, utterance_id=ev.utt.id, audio_t=ev.end / SAMPLE_RATE,
                            final=final, speculative=speculative, asr_ms=round(hyp.asr_ms, 2),
                            emotion_ms=round(emo_ms, 2))

    def _classify(self, s: Stream, hyp):
        t0 = time.perf_counter()
        kw = {"speaker": s.speaker} if s.speaker is not None else {}
        result, ms = self.emotion.classify(hyp.frames, hyp.usable_text, audio=hyp.audio,
                                           no_speech_prob=hyp.no_speech_prob, **kw)
        s.stats.busy_s += time.perf_counter() - t0
        return result, ms

    # ------------------------------------------------------------ messages

    def _send(self, s: Stream, topic: str, msg: dict) -> None:
        self.publisher.send(topic, msg)
        if self.observers and topic != "status":
            self.observers.emit("published", s.stream_id, utterance_id=msg.get("utterance_id"),
                                audio_t=msg.get("end"), topic=topic, partial=msg.get("partial"),
                                revision=msg.get("revision"), message=msg)
        if self.cfg.print_lines and self._printable(topic, msg):
            line = format_line(topic, msg)
            if len(self.streams) > 1:
                line = f"[{s.index}] {line}"
            try:
                print(line, file=self.out, flush=True)
            except OSError as e:  # `| head` (the reader left), a full disk: messages are still published
                self.cfg.print_lines = False
                try:
                    os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
                except (OSError, ValueError):
                    pass
                why = "was closed" if isinstance(e, BrokenPipeError) else f"cannot be written ({e.strerror or e})"
                print(f"stream: stdout {why}; lines are no longer printed (messages are still published)",
                      file=self.log, flush=True)

    def _printable(self, topic: str, msg: dict) -> bool:
        if topic == "emotion":
            return not msg["partial"] or self.cfg.print_partials
        return topic == "transcript" and msg["partial"] and self.cfg.print_partials

    def _publish_transcript(self, s: Stream, utt, end: int, hyp, partial: bool, revision: int, committed: str,
                            tentative: str, final_kind: str | None = None, revises: int | None = None) -> None:
        self._send(s, "transcript", s.msgs.transcript(
            utterance_id=utt.id, start=utt.start / SAMPLE_RATE, end=end / SAMPLE_RATE, partial=partial,
            revision=revision, text=hyp.text, reliable=hyp.reliable, reason=hyp.reason,
            no_speech_prob=hyp.no_speech_prob, avg_logprob=min(0.0, hyp.avg_logprob), asr_ms=hyp.asr_ms,
            committed=committed, tentative=tentative, final_kind=final_kind, revises=revises))

    def _publish_emotion(self, s: Stream, utt, end: int, hyp, result, emo_ms: float, partial: bool, revision: int,
                         t_decided: float | None, stable: bool, final_kind: str | None = None,
                         revises: int | None = None) -> None:
        text_used = "text" in result.modalities
        if text_used:
            dropped = None
        elif hyp.reliable:
            dropped = "the model does not use text"
        else:
            dropped = hyp.reason
        now = time.monotonic()
        eos_ms = None if t_decided is None else (now - t_decided) * 1000
        voice_ms = None
        if not partial and s.live and s.t_source is not None:  # paced audio: audio clock ~ wall clock
            voice_ms = max(0.0, (now - (s.t_source + utt.last_voiced_end / SAMPLE_RATE)) * 1000)
        msg = s.msgs.emotion(
            utterance_id=utt.id, start=utt.start / SAMPLE_RATE, end=end / SAMPLE_RATE, partial=partial,
            revision=revision, transcript=hyp.text, text_used=text_used, text_dropped=dropped, label=result.label,
            scores=result.probs, confidence=result.confidence, modalities=tuple(result.modalities),
            asr_ms=hyp.asr_ms, emotion_ms=emo_ms, eos_to_publish_ms=eos_ms, model=self.emotion.name,
            stable=stable, final_kind=final_kind, revises=revises,
            uncertain=getattr(result, "uncertain", False), uncertain_reason=getattr(result, "uncertain_reason", None),
            voice_end_to_publish_ms=voice_ms)
        self._send(s, "emotion", msg)
        if not partial:
            if revises is None:
                s.stats.utterances += 1
            s.stats.eos_latency_ms.append(eos_ms)
            if voice_ms is not None:
                s.stats.speech_end_latency_ms.append(voice_ms)

    def _error(self, s: Stream, utterance_id: int | None, stage: str, message: str) -> None:
        s.stats.errors += 1
        who = f"{s.stream_id}: " if len(self.streams) > 1 else ""
        if stage != "source":  # a source failure ends that stream; stream.run reports it once, last
            print(f"stream: {who}utterance {utterance_id} failed in {stage}: {message}" if utterance_id is not None
                  else f"stream: {who}{message}", file=self.log, flush=True)
        self._status(s, "error", error={"utterance_id": utterance_id, "stage": stage, "message": message[:500]})

    def counters(self, s: Stream | None = None) -> dict:
        s = s or self.streams[0]
        return {"utterances": s.stats.utterances, "partials": s.stats.partials,
                "discarded": s.stats.discarded, "dropped_audio_frames": s.source.dropped_frames,
                "dropped_blocks": s.source.dropped_blocks, "input_overflows": s.source.overflows,
                "queue_depth": s.source.queue_depth(), "pending_work": len(self.work) if self.work else 0,
                "errors": s.stats.errors,
                "messages_sent": self.publisher.sent, "send_failures": self.publisher.failures}

    def _status(self, s: Stream, kind: str, error: dict | None = None) -> None:
        device = None
        if self.tegra is not None:
            try:
                device = self.tegra()
            except Exception:  # telemetry must never take the stream down
                device = None
        with s.status_lock:  # heartbeat, worker and segmenter threads all report: keep seq in send order
            self._send(s, "status", s.msgs.status(
                kind=kind, source=s.source.describe(), audio_time=s.stats.audio_s,
                uptime_s=time.monotonic() - self.t_start, counters=self.counters(s), rtf=s.stats.rtf,
                rss_mb=rss_mb(), latency_ms=s.stats.latency(), error=error, device=device or None,
                endpoint=getattr(self.publisher, "endpoint", None), curve=getattr(self.publisher, "curve", None)))

    def _heartbeat(self) -> None:
        while not self.done.wait(self.cfg.heartbeat_s):
            for s in self.streams:
                self._status(s, "heartbeat")

    # ------------------------------------------------------------ report

    def summary(self, wall_s: float) -> str:
        s = self.total_stats()
        lat = s.latency()
        dropped = sum(x.source.dropped_frames for x in self.streams)
        many = f"{len(self.streams)} streams, " if len(self.streams) > 1 else ""
        lines = [f"summary: {many}{s.utterances} utterances from {s.audio_s:.1f} s of audio in {wall_s:.1f} s "
                 f"(processing RTF {s.rtf or 0:.2f}, wall RTF {wall_s / max(s.audio_s, 1e-9):.2f}), "
                 f"{s.partials} partial passes ({s.partials_skipped} skipped to keep up), "
                 f"dropped audio {dropped} frames, "
                 f"errors {s.errors}, memory {rss_mb() or 0:.0f} MB"]
        if "voice_end" in lat:  # live audio: what the speaker waits
            v = lat["voice_end"]
            lines.append(f"latency end of voice (last voiced audio) -> final emotion message: median "
                         f"{v['median']:.0f} ms, p95 {v['p95']:.0f} ms (n={v['count']})")
        if lat["count"]:
            lines.append(f"latency end-of-speech decision -> final emotion message: median {lat['median']:.0f} ms, "
                         f"p95 {lat['p95']:.0f} ms (n={lat['count']})"
                         + ("" if "voice_end" in lat else " (audio read faster than real time: processing only)"))
        if any(x.early_final for x in self.streams):
            lines.append(f"finals: {s.early_finals} published at the pause (early), {s.revised_finals} revised "
                         f"because speech resumed")
        elif any(x.speculate for x in self.streams):
            lines.append(f"speculative final passes: {s.speculative_hits} used, {s.speculative_misses} discarded")
        if len(self.streams) > 1:
            lines.append(f"passes batched across streams: {s.batched_passes}")
        return "\n".join(lines)
