"""Our pipeline, measured from outside: stream's own classes with timing proxies, nothing patched in stream/.

`OurStack` is what `python -m stream.run` loads (Recognizer + EmotionStage + Publisher). Its Whisper
frontend and emotion backend get thin proxies that time the calls the run-time already makes, so the
split into encoder / decode / text encoder / FDRL comes from the real run, not a re-implementation.
`PassRecorder` listens to the pipeline's public events (stream/events.py) for per-utterance stamps: when
the VAD decided the utterance ended, when the final pass ran (possibly speculatively, before that
decision), when publishing started; `attach_arrivals` adds when a subscriber received the final emotion.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import Clock, Cost, Receiver, summary
from bench.machine import HardwarePath
from fdrl_core.audio import SAMPLE_RATE
from stream.pipeline import Pipeline


class Sink:
    """Costs per key, accumulated by proxies; `take()` returns and clears them."""

    def __init__(self):
        self.costs: dict[str, Cost] = {}

    def add(self, key: str, cost: Cost) -> None:
        self.costs[key] = self.costs.get(key, Cost()) + cost

    def reset(self) -> None:
        self.costs = {}

    def take(self) -> dict[str, Cost]:
        out, self.costs = self.costs, {}
        return out


class TimedCall:
    """Stands in for a callable object: times each call into `sink[key]`, forwards attribute access."""

    def __init__(self, target, sink: Sink, key: str, sync=None):
        self._target, self._sink, self._key, self._sync = target, sink, key, sync

    def __call__(self, *args, **kwargs):
        with Clock() as c:
            out = self._target(*args, **kwargs)
            if self._sync is not None:  # GPU work is asynchronous: wait for it inside the stage it belongs to
                self._sync()
        self._sink.add(self._key, c.cost)
        return out

    def __getattr__(self, name):
        return getattr(self._target, name)


class TimedMethods:
    """Stands in for an object: the named methods are timed, everything else is forwarded."""

    def __init__(self, target, sink: Sink, methods: dict[str, str]):
        self._target, self._sink, self._methods = target, sink, methods

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if name in self._methods:
            return TimedCall(attr, self._sink, self._methods[name])
        return attr


class EmotionProbe:
    """Splits an emotion backend's time into text encoder and FDRL.

    torch: MiniLM's forward and the FDRL head are separate modules, timed directly. onnxruntime and
    TensorRT run both in one graph: the proxies time tokenising and the graph; `split_fused` gives the
    text encoder's share as (graph with the transcript) - (graph without text), measured back to back.
    """

    def __init__(self, backend):
        self.sink = Sink()
        self.backend = backend
        self.kind = getattr(backend, "name", "")
        if self.kind == "torch":
            sync = None
            if getattr(backend, "device", "cpu") == "cuda":
                import torch

                sync = torch.cuda.synchronize
            backend.text.model = TimedCall(backend.text.model, self.sink, "text_encoder", sync)
            backend.head = TimedCall(backend.head, self.sink, "fdrl", sync)
        elif self.kind == "onnxruntime":
            backend.tokenizer = TimedCall(backend.tokenizer, self.sink, "tokenize")
            backend.session = TimedMethods(backend.session, self.sink, {"run": "graph"})
        elif self.kind == "tensorrt":
            backend.tokenizer = TimedCall(backend.tokenizer, self.sink, "tokenize")
            backend.runner = TimedCall(backend.runner, self.sink, "graph")

    @property
    def fused(self) -> bool:
        return self.kind in ("onnxruntime", "tensorrt")


# ------------------------------------------------------------------------------------------ our stack


@dataclass
class StackOptions:
    model: str | None = None  # checkpoint / ONNX folder / engine; None: $FDRL_MODEL or the demo model
    backend: str = "auto"
    asr_model: str | None = None


class OurStack:
    """The models `python -m stream.run` loads, loaded once and reused across runs."""

    def __init__(self, opts: StackOptions, hw: HardwarePath):
        from stream.asr import AsrConfig, Recognizer
        from stream.config import PipelineConfig
        from stream.emotion import EmotionConfig, EmotionStage
        from stream.vad import VadConfig

        self.cfg = PipelineConfig(vad=VadConfig(), asr=AsrConfig(model=opts.asr_model, device=hw.asr_device,
                                                                 compute_type=hw.asr_compute_type),
                                  emotion=EmotionConfig(backend=opts.backend, model=opts.model,
                                                        device=hw.emotion_device)).validate()
        with Clock() as c:
            self.recognizer = Recognizer(self.cfg.asr)
            self.emotion = EmotionStage(self.cfg.emotion)
        self.load_s = c.cost.wall_ms / 1000
        self.encode_sink = Sink()
        self.recognizer.frontend = TimedMethods(self.recognizer.frontend, self.encode_sink, {"encode": "encode"})
        self.probe = EmotionProbe(self.emotion.backend)
        self.torch_threads = _torch_threads()

    @property
    def backend_name(self) -> str:
        return self.emotion.backend.name

    def describe(self) -> dict:
        asr = self.cfg.asr
        return {"emotion": self.emotion.name, "backend": self.backend_name, "model": str(self.emotion.model_path),
                "emotion_device": self.cfg.emotion.device, "emotion_threads": self.cfg.emotion.threads,
                "asr_model": self.recognizer.model_name, "asr_device": asr.device, "compute_type": asr.compute_type,
                "asr_threads": asr.cpu_threads or "one per core, at most 4", "beam_final": asr.beam_size,
                "beam_partial": asr.partial_beam_size, "partial_every_s": asr.partial_every_s,
                "speculative": self.cfg.speculative, "vad_hangover_ms": self.cfg.vad.hangover_ms,
                "vad_tail_ms": self.cfg.vad.tail_ms, "load_s": round(self.load_s, 2)}

    def final_pass(self, audio: np.ndarray, second_encoder: bool = False):
        """One utterance the way the run-time finishes it: shared encoder -> decode -> emotion. With
        `second_encoder` the emotion's speech frames come from a separate encoder pass instead.
        Returns (costs, Hypothesis, EmotionResult)."""
        self.encode_sink.reset()
        self.probe.sink.reset()
        with TorchThreads(self.torch_threads):
            with Clock() as asr:
                hyp = self.recognizer.transcribe(audio, final=True)
            costs = {"asr": asr.cost}
            enc = self.encode_sink.take().get("encode", Cost())
            costs["encoder"], costs["decode"] = enc, Cost(asr.cost.wall_ms - enc.wall_ms, asr.cost.cpu_ms - enc.cpu_ms)
            frames = hyp.frames
            if second_encoder:
                with Clock() as c:
                    frames = self.recognizer.frontend.frames(audio)
                costs["second_encoder"] = c.cost
                self.encode_sink.reset()
            with Clock() as emo:
                result, _ = self.emotion.classify(frames, hyp.usable_text)
            costs["emotion"] = emo.cost
            costs.update(self.probe.sink.take())
            if self.probe.fused and not second_encoder:
                with Clock() as nt:
                    self.emotion.classify(frames, None)
                self.probe.sink.reset()
                costs["fdrl"] = nt.cost  # the graph with no text: FDRL (+ MiniLM over one masked token)
                costs["text_encoder"] = Cost(max(0.0, emo.cost.wall_ms - nt.cost.wall_ms),
                                             max(0.0, emo.cost.cpu_ms - nt.cost.cpu_ms))
        return costs, hyp, result

    def warmup(self, audio: np.ndarray) -> None:
        self.final_pass(audio)
        self.recognizer.transcribe(audio, final=False)


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


class TorchThreads:
    """torch's thread count is process-wide: each pipeline runs with its own setting."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        torch = sys.modules.get("torch")
        self.torch, self.prev = torch, (torch.get_num_threads() if torch is not None else None)
        if torch is not None and self.n and self.n != self.prev:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.torch is not None and self.prev and self.torch.get_num_threads() != self.prev:
            self.torch.set_num_threads(self.prev)


# ------------------------------------------------------------------------------------------ real time


@dataclass
class FinalPass:
    start: float = 0.0
    end: float = 0.0
    costs: dict[str, Cost] = field(default_factory=dict)


@dataclass
class UtteranceRecord:
    utterance_id: int
    duration_s: float  # the utterance as the VAD cut it (pre-roll and tail included)
    reason: str
    t_decided: float  # monotonic: the VAD's end-of-speech decision
    t_handled: float  # the worker picked the end up
    t_speech_end: float | None  # monotonic time of the last voiced sample (the audio clock paced in real time)
    speculative: bool  # the final pass ran during the hangover, before the decision
    final_pass: FinalPass
    t_publish: float  # publishing started (transcript, then emotion)
    t_sent: float  # the emotion message was handed to ZeroMQ
    t_received: float | None = None  # a subscriber had it
    transcript: str = ""
    label: str = ""
    audio: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict:
        """Per-utterance numbers (ms) for the JSON. Between the decision and the message lie: the rest of a
        speculative final pass still running, other queued work (a partial pass), a final pass started only
        after the decision, and publishing; the four add up to eos_to_emotion."""
        got = self.t_received if self.t_received is not None else self.t_sent
        fp = self.final_pass
        spec_rest = max(0.0, fp.end - self.t_decided) if self.speculative else 0.0
        after = 0.0 if self.speculative else max(0.0, fp.end - fp.start)
        wait = max(0.0, self.t_handled - self.t_decided - spec_rest)
        row = {"utterance_id": self.utterance_id, "duration_s": round(self.duration_s, 3), "reason": self.reason,
               "eos_to_emotion_ms": round((got - self.t_decided) * 1000, 1),
               "speech_end_to_emotion_ms": (round((got - self.t_speech_end) * 1000, 1)
                                            if self.t_speech_end is not None else None),
               "speculative_rest_ms": round(spec_rest * 1000, 1),
               "queue_wait_ms": round(wait * 1000, 1),
               "final_pass_after_eos_ms": round(after * 1000, 1),
               "publish_ms": round((got - self.t_publish) * 1000, 2),
               "final_pass_ms": round((fp.end - fp.start) * 1000, 1),
               "speculative": self.speculative, "received": self.t_received is not None,
               "transcript": self.transcript, "label": self.label}
        for k, c in self.final_pass.costs.items():
            row[f"{k}_ms"] = round(c.wall_ms, 2)
            row[f"{k}_cpu_ms"] = round(c.cpu_ms, 2)
        return row


class PassRecorder:
    """An Observer (stream/events.py) that turns the pipeline's events into per-utterance records.

    The pipeline says when the VAD decided, when each pass started and ended (with its ASR and emotion
    time) and when each message left; the stack's proxies (TimedMethods / EmotionProbe) split a final
    pass into encoder / decode / text encoder / FDRL. Observers run on the pipeline's threads in order,
    so a final pass's proxy costs are exactly those between its pass_start and pass_end.

    A final is published after its final pass (no pass events when the speculative pass done during the
    hangover is used), and with early finals even before the VAD's end-of-speech decision; a record is
    made once an utterance has both its first final emotion message and its decision."""

    def __init__(self, stack: OurStack | None, audio: np.ndarray | None = None):
        self.stack = stack
        self.audio = audio  # the file's samples: each record keeps its utterance's audio (for cost passes)
        self.origin: float | None = None
        self.records: list[UtteranceRecord] = []
        self._decided: dict[int, object] = {}
        self._cur: dict[int, tuple] = {}
        self._pass: dict[int, tuple[FinalPass, bool, float, int]] = {}  # last final pass: fp, speculative, ...
        self._pub: dict[int, float] = {}
        self._sent: dict[int, object] = {}
        self._done: set[int] = set()

    def __call__(self, ev) -> None:
        kind, uid = ev.kind, ev.utterance_id
        if kind == "source_start":
            self.origin = ev.t - (ev.audio_t or 0.0)
        elif kind == "speech_end":
            self._decided[uid] = ev
            self._record(uid)
        elif kind == "pass_start" and ev.data.get("final"):
            if self.stack is not None:
                self.stack.encode_sink.reset()
                self.stack.probe.sink.reset()
            self._cur[uid] = (ev, FinalPass(start=ev.t), time.process_time())
        elif kind == "pass_end" and ev.data.get("final") and uid in self._cur:
            self._pass_end(ev)
        elif kind == "published" and not ev.data.get("partial") and uid not in self._done:
            if ev.data.get("topic") == "transcript":
                self._pub.setdefault(uid, ev.t)
            elif ev.data.get("topic") == "emotion":
                self._sent.setdefault(uid, ev)
                self._record(uid)

    def _pass_end(self, ev) -> None:
        uid = ev.utterance_id
        start, fp, cpu0 = self._cur.pop(uid)
        fp.end = ev.t
        cpu_ms = (time.process_time() - cpu0) * 1000
        asr_ms, emo_ms = float(ev.data.get("asr_ms") or 0.0), float(ev.data.get("emotion_ms") or 0.0)
        enc = self.stack.encode_sink.take().get("encode", Cost()) if self.stack else Cost()
        parts = self.stack.probe.sink.take() if self.stack else {}
        emo_cpu = sum(c.cpu_ms for c in parts.values())  # the emotion stage's timed pieces
        asr = Cost(asr_ms, max(0.0, cpu_ms - emo_cpu))
        fp.costs = {"asr": asr, "encoder": enc, "decode": Cost(asr.wall_ms - enc.wall_ms, asr.cpu_ms - enc.cpu_ms),
                    "emotion": Cost(emo_ms, emo_cpu), **parts}
        self._pass[uid] = (fp, bool(ev.data.get("speculative")), start.t, start.data.get("samples", 0))

    def _record(self, uid: int) -> None:
        ev, decided, fpass = self._sent.get(uid), self._decided.get(uid), self._pass.get(uid)
        if ev is None or decided is None or fpass is None:
            return
        self._done.add(uid)
        self._sent.pop(uid)
        self._decided.pop(uid)
        self._pass.pop(uid)
        msg = ev.data.get("message") or {}
        fp, speculative, t_handled, samples = fpass
        speech_end = self.origin + decided.audio_t if self.origin is not None and decided.audio_t is not None \
            else None
        audio = None
        if self.audio is not None and msg.get("start") is not None:
            audio = np.asarray(self.audio[int(round(msg["start"] * SAMPLE_RATE)):int(round(msg["end"] * SAMPLE_RATE))])
        self.records.append(UtteranceRecord(
            uid, samples / SAMPLE_RATE, decided.data.get("reason", ""), decided.t, max(t_handled, decided.t),
            speech_end, speculative, fp, self._pub.pop(uid, ev.t), ev.t, transcript=msg.get("transcript") or "",
            label=msg.get("label") or "", audio=audio))


@dataclass
class RealtimeRun:
    """One real-time replay of a file through a pipeline."""
    name: str
    audio_s: float
    wall_s: float
    cpu_s: float  # process CPU over the replay
    records: list[UtteranceRecord]
    dropped_audio_frames: int = 0
    busy_s: float | None = None  # ASR + emotion compute (the run-time's own RTF numerator)
    extra: dict = field(default_factory=dict)
    origin: float | None = None  # time.monotonic() of audio sample 0 (paced audio)


def pace(run_fn, total_s: float, progress_fn, desc: str):
    """Run `run_fn` in a thread while a tqdm bar follows the audio clock."""
    from tqdm import tqdm

    box: dict = {}

    def target():
        try:
            box["out"] = run_fn()
        except BaseException as e:  # re-raised in the caller's thread
            box["err"] = e

    th = threading.Thread(target=target, name=f"bench-{desc}", daemon=True)
    with tqdm(total=round(total_s, 1), desc=desc, unit="s audio", leave=False, file=sys.stderr,
              bar_format="{desc}: {bar} {n:.1f}/{total:.1f} s audio") as bar:
        th.start()
        while th.is_alive():
            th.join(0.5)
            bar.n = min(total_s, round(progress_fn(), 1))
            bar.refresh()
    if "err" in box:
        raise box["err"]
    return box.get("out")


def run_ours_realtime(stack: OurStack, audio_path: Path, publisher, receiver: Receiver, stream_id: str,
                      vad=None, observers=()) -> RealtimeRun:
    """Replay `audio_path` paced like a microphone through stream's pipeline (live mode: segmenter and
    recogniser threads, partials, speculative final pass), exactly as `stream.run --file --realtime`,
    measured through the pipeline's public observer events (plus any extra `observers`)."""
    from dataclasses import replace

    from fdrl_core.audio import load_audio, to_int16
    from stream.sources import FileSource

    cfg = replace(stack.cfg, stream_id=stream_id, print_lines=False, vad=vad or stack.cfg.vad)
    source = FileSource(audio_path, realtime=True, frame_ms=cfg.vad.frame_ms, queue_seconds=cfg.queue_seconds)
    recorder = PassRecorder(stack, to_int16(load_audio(audio_path)))  # the source streams in blocks
    pipe = Pipeline(cfg, source, stack.recognizer, stack.emotion, publisher, out=io.StringIO(), log=sys.stderr,
                    observers=[recorder, *observers])
    with TorchThreads(stack.torch_threads):
        with Clock() as c:
            pace(pipe.run, source.duration, lambda: pipe.stats.audio_s, f"ours {stream_id}")
    attach_arrivals(recorder.records, receiver, stream_id)
    return RealtimeRun("ours", source.duration, c.cost.wall_ms / 1000, c.cost.cpu_ms / 1000, recorder.records,
                       dropped_audio_frames=source.dropped_frames, busy_s=pipe.stats.busy_s,
                       extra={"partials": pipe.stats.partials, "partials_skipped": pipe.stats.partials_skipped,
                              "speculative_hits": pipe.stats.speculative_hits,
                              "speculative_misses": pipe.stats.speculative_misses, "errors": pipe.stats.errors,
                              "early_finals": pipe.stats.early_finals, "revised_finals": pipe.stats.revised_finals},
                       origin=recorder.origin)


def attach_arrivals(records: list[UtteranceRecord], receiver: Receiver, stream_id: str) -> None:
    ids = {r.utterance_id for r in records}
    deadline = time.monotonic() + 2.0
    arrivals: dict[int, float] = {}
    while time.monotonic() < deadline:
        arrivals = {m["utterance_id"]: t for t, m in receiver.finals() if m["stream_id"] == stream_id}
        if ids <= set(arrivals):
            break
        time.sleep(0.05)
    for r in records:
        r.t_received = arrivals.get(r.utterance_id)


def realtime_summary(runs: list[RealtimeRun]) -> dict:
    """Replays of one pipeline merged: latency and stage summaries over every final utterance."""
    rows = [r.row() for run in runs for r in run.records]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    stage_keys = [k[:-3] for k in keys if k.endswith("_ms") and not k.endswith("_cpu_ms")]
    audio_s = sum(run.audio_s for run in runs)
    cpu_s = sum(run.cpu_s for run in runs)
    busy = [run.busy_s for run in runs if run.busy_s is not None]
    extra: dict = {}
    for run in runs:
        for k, v in run.extra.items():
            extra[k] = extra.get(k, 0) + v
    return {
        "replays": len(runs), "audio_s": round(audio_s, 2), "wall_s": round(sum(run.wall_s for run in runs), 2),
        "utterances": len(rows),
        "latency_ms": {"eos_to_emotion": summary(r["eos_to_emotion_ms"] for r in rows),
                       "speech_end_to_emotion": summary(r["speech_end_to_emotion_ms"] for r in rows)},
        "stages_ms": {k: summary(r.get(f"{k}_ms") for r in rows) for k in stage_keys},
        "stages_cpu_ms": {k: summary(r.get(f"{k}_cpu_ms") for r in rows) for k in stage_keys
                          if any(f"{k}_cpu_ms" in r for r in rows)},
        "cpu_s": round(cpu_s, 2),
        "cpu_s_per_audio_s": round(cpu_s / audio_s, 3) if audio_s else None,
        "processing_rtf": round(sum(busy) / audio_s, 3) if busy and audio_s else None,
        "dropped_audio_frames": sum(run.dropped_audio_frames for run in runs),
        "speculative": sum(r["speculative"] for r in rows),
        "received_by_subscriber": sum(r["received"] for r in rows),
        **extra,
        "per_utterance": rows,
    }
