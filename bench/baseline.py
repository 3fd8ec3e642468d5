"""The naive pipeline a user would assemble from the peers' READMEs: the comparison point.

faster-whisper's documented CPU setup (`WhisperModel(path, device="cpu", compute_type="int8")`, its default
threads) and `transcribe(audio, beam_size=5)` with its own VAD off (the utterance is already cut), then a
second Whisper encoder pass for the emotion's speech frames (SpeechFrontend.frames(audio)), then the
PyTorch FDRL model (MiniLM + head, torch's default threads). Utterances are cut by the same webrtcvad
segmenter as ours, and all work happens in one thread when an utterance ends: no partials, no speculation.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import Clock, Cost, Receiver
from bench.instrument import EmotionProbe, FinalPass, RealtimeRun, TorchThreads, UtteranceRecord, attach_arrivals, pace
from bench.machine import HardwarePath
from fdrl_core.audio import SAMPLE_RATE


@dataclass
class BaselineOptions:
    model: str | None = None  # FDRL checkpoint folder (the torch backend needs one)
    asr_model: str | None = None
    beam_size: int = 5  # faster-whisper's default
    cpu_threads: int = 0  # faster-whisper's default (CTranslate2 then uses 4 threads)


class NaiveStack:
    def __init__(self, opts: BaselineOptions, hw: HardwarePath, torch_threads: int | None):
        from faster_whisper import WhisperModel

        from fdrl_core.assets import whisper_model_dir
        from fdrl_core.speech_frontend import SpeechFrontend
        from stream.backends import TorchBackend
        from stream.emotion import resolve_model

        self.opts = opts
        self.hw = hw
        model = resolve_model(opts.model)
        if not (Path(model) / "model.safetensors").is_file():
            raise ValueError(f"the naive baseline runs the PyTorch model: {model} is not a checkpoint folder "
                             "(pass --model with a checkpoint; its ONNX export is used by our pipeline)")
        self.compute_type = "float16" if hw.asr_device == "cuda" else "int8"
        with Clock() as c:
            self.whisper = WhisperModel(str(whisper_model_dir(opts.asr_model)), device=hw.asr_device,
                                        compute_type=self.compute_type, cpu_threads=opts.cpu_threads,
                                        local_files_only=True)
            self.frontend = SpeechFrontend(whisper=self.whisper, compute_type=self.compute_type)
            device = "cuda" if hw.emotion_device == "cuda" and hw.torch_cuda else "cpu"
            self.emotion = TorchBackend(model, device=device)
        self.load_s = c.cost.wall_ms / 1000
        self.device = device
        self.probe = EmotionProbe(self.emotion)
        self.torch_threads = torch_threads  # torch's default for this machine, as a user gets it

    def describe(self) -> dict:
        return {"asr": f"faster-whisper WhisperModel.transcribe(beam_size={self.opts.beam_size}, vad_filter=False)",
                "asr_device": self.hw.asr_device, "compute_type": self.compute_type,
                "asr_threads": self.opts.cpu_threads or "faster-whisper default (4)",
                "speech_frames": "a second Whisper encoder pass (SpeechFrontend.frames(audio))",
                "emotion": f"torch FDRL + MiniLM on {self.device}", "torch_threads": self.torch_threads,
                "load_s": round(self.load_s, 2)}

    def transcribe(self, audio: np.ndarray) -> str:
        segments, _ = self.whisper.transcribe(audio, beam_size=self.opts.beam_size, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()

    def process(self, audio: np.ndarray, torch_threads: int | None = None) -> tuple[dict[str, Cost], str, object]:
        """(costs, transcript, EmotionResult) for one utterance (float32 16 kHz); `torch_threads` overrides
        torch's default for this call."""
        self.probe.sink.reset()
        with TorchThreads(torch_threads or self.torch_threads):
            with Clock() as a:
                text = self.transcribe(audio)
            with Clock() as e:
                frames = self.frontend.frames(audio)
            with Clock() as m:
                result = self.emotion.predict(frames, text or None)
        costs = {"asr": a.cost, "second_encoder": e.cost, "emotion": m.cost, **self.probe.sink.take()}
        return costs, text, result

    def warmup(self, audio: np.ndarray) -> None:
        self.process(audio)


def run_naive_realtime(stack: NaiveStack, audio_path: Path, vad_cfg, publisher, receiver: Receiver,
                       stream_id: str, observers=()) -> RealtimeRun:
    """The naive loop over a file paced like a microphone: VAD frames in; at each end of speech,
    transcribe + encode + classify + publish, in the same thread. It reports the same public events as
    stream's pipeline (stream/events.py) to `observers`, so one analysis measures both."""
    from stream.events import Observers
    from stream.messages import MessageFactory
    from stream.sources import FileSource
    from stream.vad import Segmenter, SpeechEnd, SpeechStart

    source = FileSource(audio_path, realtime=True, frame_ms=vad_cfg.frame_ms)
    seg = Segmenter(vad_cfg, grow_every_ms=None)
    msgs = MessageFactory(stream_id)
    records: list[UtteranceRecord] = []
    clock = {"audio": 0.0, "t_source": None, "origin": None}
    events = Observers(list(observers))

    def handle(ev, t_decided: float) -> None:
        audio = ev.audio.astype(np.float32) / 32768.0
        events.emit("speech_end", stream_id, utterance_id=ev.utt.id, t=t_decided,
                    audio_t=ev.utt.last_voiced_end / SAMPLE_RATE, reason=ev.reason)
        t0 = time.monotonic()
        events.emit("pass_start", stream_id, utterance_id=ev.utt.id, t=t0, audio_t=ev.end / SAMPLE_RATE, final=True,
                    speculative=False, samples=len(ev.audio))
        costs, text, result = stack.process(audio)
        t1 = time.monotonic()
        events.emit("pass_end", stream_id, utterance_id=ev.utt.id, t=t1, audio_t=ev.end / SAMPLE_RATE, final=True,
                    speculative=False, asr_ms=costs["asr"].wall_ms,
                    emotion_ms=costs["emotion"].wall_ms + costs["second_encoder"].wall_ms)
        msg = msgs.emotion(utterance_id=ev.utt.id, start=ev.utt.start / SAMPLE_RATE, end=ev.end / SAMPLE_RATE,
                           partial=False, revision=1, transcript=text, text_used=bool(text), text_dropped=None,
                           label=result.label, scores=result.probs, confidence=result.confidence,
                           modalities=tuple(result.modalities), asr_ms=costs["asr"].wall_ms,
                           emotion_ms=costs["emotion"].wall_ms + costs["second_encoder"].wall_ms,
                           eos_to_publish_ms=(t1 - t_decided) * 1000, model="naive-baseline")
        publisher.send("emotion", msg)
        t_sent = time.monotonic()
        events.emit("published", stream_id, utterance_id=ev.utt.id, t=t_sent, topic="emotion", partial=False,
                    revision=1, message=msg)
        speech_end = clock["t_source"] + ev.utt.last_voiced_end / SAMPLE_RATE
        records.append(UtteranceRecord(ev.utt.id, len(ev.audio) / SAMPLE_RATE, ev.reason, t_decided, t0,
                                       speech_end, False, FinalPass(t0, t1, costs), t1, t_sent,
                                       transcript=text, label=result.label, audio=np.asarray(ev.audio)))

    def loop() -> None:
        source.start()
        clock["t_source"] = time.monotonic()
        try:
            for frame in source.frames():
                if clock["origin"] is None:
                    t = time.monotonic()
                    clock["origin"] = t - frame.end / SAMPLE_RATE
                    events.emit("source_start", stream_id, t=t, audio_t=frame.end / SAMPLE_RATE, live=True,
                                sample_rate=SAMPLE_RATE)
                clock["audio"] = frame.end / SAMPLE_RATE
                for ev in seg.push(frame.samples, frame.start):
                    if isinstance(ev, SpeechStart):
                        events.emit("speech_start", stream_id, utterance_id=ev.utt.id,
                                    audio_t=ev.utt.onset / SAMPLE_RATE)
                    if isinstance(ev, SpeechEnd):
                        handle(ev, time.monotonic())
            for ev in seg.flush():
                if isinstance(ev, SpeechEnd):
                    handle(ev, time.monotonic())
        finally:
            source.close()
            events.emit("source_end", stream_id, audio_t=clock["audio"], reason="end")

    with Clock() as c:
        pace(loop, source.duration, lambda: clock["audio"], f"baseline {stream_id}")
    attach_arrivals(records, receiver, stream_id)
    busy = sum((r.final_pass.end - r.final_pass.start) for r in records)
    return RealtimeRun("baseline", source.duration, c.cost.wall_ms / 1000, c.cost.cpu_ms / 1000, records,
                       dropped_audio_frames=source.dropped_frames, busy_s=busy, origin=clock["origin"])


def torch_default_threads() -> int | None:
    """torch's own default thread count, read before anything in this process changes it."""
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:
            return None
    return torch.get_num_threads()
