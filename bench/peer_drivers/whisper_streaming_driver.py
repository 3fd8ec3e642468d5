"""whisper-streaming 0.1.0 (PyPI; an unofficial rework of ufal's whisper_streaming) through its own
streaming interface: ASRProcessor with an AudioReceiver that hands it the paced audio and an
OutputSender that receives committed words (LocalAgreement). Audio is handed over in chunks of at least
1 s (ufal's default --min-chunk-size), everything that arrived since the last chunk; the processor
re-transcribes its buffer at each chunk, trimmed to 15 s (TimeTrimming; its default SentenceTrimming
raises). Partials: the words in limbo after each pass; finals: committed words with their audio span."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
from _protocol import cpu_s, emit, feed_paced, read_wav_int16, run

MIN_CHUNK_S = 1.0


def main(job: dict) -> None:
    from whisper_streaming import ASRProcessor, AudioReceiver, Backend, OutputSender, TimeTrimming
    from whisper_streaming.backend import (
        FasterWhisperFeatureExtractorConfig,
        FasterWhisperModelConfig,
        FasterWhisperTranscribeConfig,
    )

    blocks: queue.Queue = queue.Queue()

    class PacedReceiver(AudioReceiver):
        def _do_receive(self):
            got, n, end = [], 0, False
            while n < MIN_CHUNK_S * 16000:
                b = blocks.get()
                if b is None:
                    end = True
                    break
                got.append(b)
                n += len(b)
            while not end:  # and whatever else is already there
                try:
                    b = blocks.get_nowait()
                except queue.Empty:
                    break
                if b is None:
                    end = True
                    break
                got.append(b)
            if not got:
                return None
            if end:
                blocks.put(None)
            return np.concatenate(got).astype(np.float32) / 32768.0

        def _do_close(self):
            pass

    class Events(OutputSender):
        def _do_output(self, data):
            if data is not None and data.word.strip():
                emit("final", text=data.word.strip(), start=float(data.start), end=float(data.end))

        def _do_close(self):
            pass

    class Processor(ASRProcessor):
        def _process(self, audio):
            out = super()._process(audio)
            limbo = self._transcription_buffer.transcriptions_in_limbo
            if limbo:
                emit("partial", text="".join(w.word for w in limbo).strip())
            return out

    t_load = time.monotonic()
    proc = Processor(
        ASRProcessor.ProcessorConfig(sampling_rate=16000, prompt_size=200, audio_receiver_timeout=5.0,
                                     audio_trimming=TimeTrimming(seconds=15), language="en"),
        PacedReceiver(), Events(), Backend.FASTER_WHISPER,
        FasterWhisperModelConfig(model_size_or_path=job["model"], device="cpu", compute_type="int8",
                                 local_files_only=True),
        FasterWhisperTranscribeConfig(), FasterWhisperFeatureExtractorConfig())
    emit("ready", load_s=round(time.monotonic() - t_load, 2))
    worker = threading.Thread(target=proc.run, name="processor", daemon=True)
    worker.start()
    pcm = read_wav_int16(job["wav"])
    fed = feed_paced(pcm, blocks.put)
    blocks.put(None)
    worker.join(job.get("tail_s", 5.0))  # it may still be working through a backlog
    emit("done", audio_s=fed["audio_s"], cpu_s=round(cpu_s() - fed["cpu0"], 3),
         fed_late_blocks=fed["fed_late_blocks"], finished=not worker.is_alive())


if __name__ == "__main__":
    run(main)
