"""WhisperLiveKit (QuentinFuxa/WhisperLiveKit) through its own streaming interface, as its server uses it:
one TranscriptionEngine (--backend faster-whisper --backend-policy localagreement --model_dir <CT2 dir>
--lan en --pcm-input; the default SimulStreaming policy needs PyTorch Whisper weights from the internet;
a local warm-up file, since the default one is downloaded) and an AudioProcessor per stream fed raw
s16le bytes, results from its results generator. Committed text is final: a new line, or the words a
line grew by, with their audio span; buffer_transcription (not yet committed) is the partial. Its
defaults otherwise (VAC on, Silero bundled)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import wave

from _protocol import cpu_s, emit, read_wav_int16, run


def seconds(text) -> float:
    """Its "H:MM:SS.cc" (or a number) as seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    out = 0.0
    for part in str(text).split(":"):
        out = out * 60 + float(part)
    return out


def norm_words(text: str) -> list[str]:
    return ["".join(c for c in w.lower() if c.isalnum() or c == "'") for w in text.split()]


def main(job: dict) -> None:
    from whisperlivekit import AudioProcessor, TranscriptionEngine

    pcm = read_wav_int16(job["wav"])
    warm = os.path.join(tempfile.mkdtemp(prefix="wlk-"), "warmup.wav")
    with wave.open(warm, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm[: 16000 * 5].tobytes())
    t_load = time.monotonic()
    engine = TranscriptionEngine(backend="faster-whisper", backend_policy="localagreement", model_dir=job["model"],
                                 lan="en", pcm_input=True, warmup_file=warm, diarization=False, log_level="WARNING")
    emit("ready", load_s=round(time.monotonic() - t_load, 2))
    asyncio.run(stream(engine, AudioProcessor, pcm, job.get("tail_s", 5.0)))


async def stream(engine, AudioProcessor, pcm, tail_s: float) -> None:
    proc = AudioProcessor(transcription_engine=engine, language="en")
    proc.is_pcm_input = True
    results = await proc.create_tasks()
    lines_seen: dict = {}  # line start -> (text, end) last reported
    last_buffer = [""]

    async def consume() -> None:
        async for resp in results:
            d = resp.to_dict()
            if d.get("error"):
                emit("error", message=f"WhisperLiveKit: {d['error']}")
            for line in d.get("lines") or []:
                text = (line.get("text") or "").strip()
                if not text:
                    continue
                start, end = seconds(line["start"]), seconds(line["end"])
                old_text, old_end = lines_seen.get(start, ("", start))
                if text == old_text:
                    continue
                lines_seen[start] = (text, end)
                old_w, new_w = norm_words(old_text), text.split()
                k = 0
                while k < min(len(old_w), len(new_w)) and norm_words(new_w[k]) == [old_w[k]]:
                    k += 1
                if old_w and k >= len(old_w) - 2:  # the line grew (its last words may be re-punctuated)
                    piece = " ".join(new_w[k:])
                    if piece:
                        # re-punctuated last words: about the last second of the old line
                        emit("final", text=piece, start=old_end if k == len(old_w) else max(start, old_end - 1.0),
                             end=end)
                else:
                    emit("final", text=text, start=start, end=end)
            buf = (d.get("buffer_transcription") or "").strip()
            if buf and buf != last_buffer[0]:
                emit("partial", text=buf)
            last_buffer[0] = buf

    consumer = asyncio.create_task(consume())
    block = 480  # 30 ms
    cpu0 = cpu_s()
    t0 = time.monotonic()
    emit("origin", t=t0)
    late = 0
    for i in range(0, len(pcm), block):
        delay = t0 + (i + block) / 16000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.03:
            late += 1
        await proc.process_audio(pcm[i:i + block].tobytes())
    await asyncio.sleep(tail_s)
    emit("done", audio_s=len(pcm) / 16000, cpu_s=round(cpu_s() - cpu0, 3), fed_late_blocks=late)
    consumer.cancel()


if __name__ == "__main__":
    run(main)
