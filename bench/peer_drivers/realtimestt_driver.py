"""RealtimeSTT (KoljaB/RealtimeSTT) through its own streaming interface: AudioToTextRecorder fed with
feed_audio(), finals from recorder.text(), partials from on_realtime_transcription_update. Its defaults
otherwise (beam 5 / partial beam 3, post_speech_silence_duration 0.6 s, webrtcvad then Silero)."""

from __future__ import annotations

import threading
import time

from _protocol import cpu_s, emit, feed_paced, read_wav_int16, run


def main(job: dict) -> None:
    from RealtimeSTT import AudioToTextRecorder

    t_load = time.monotonic()
    recorder = AudioToTextRecorder(
        model=job["model"], realtime_model_type=job["model"], use_main_model_for_realtime=True,
        device="cpu", compute_type="int8", language="en", use_microphone=False, spinner=False,
        enable_realtime_transcription=True,
        on_realtime_transcription_update=lambda text: text.strip() and emit("partial", text=text.strip()))
    emit("ready", load_s=round(time.monotonic() - t_load, 2))

    stop = threading.Event()

    def finals() -> None:
        while not stop.is_set():
            text = recorder.text()
            if stop.is_set():
                return
            if text and text.strip():
                emit("final", text=text.strip())

    th = threading.Thread(target=finals, name="finals", daemon=True)
    th.start()
    pcm = read_wav_int16(job["wav"])
    fed = feed_paced(pcm, lambda block: recorder.feed_audio(block.tobytes(), original_sample_rate=16000))
    time.sleep(job.get("tail_s", 5.0))  # let the last utterance finish
    stop.set()
    emit("done", audio_s=fed["audio_s"], cpu_s=round(cpu_s() - fed["cpu0"], 3),
         fed_late_blocks=fed["fed_late_blocks"])
    try:
        recorder.abort()
    except Exception:  # noqa: BLE001 - shutting down a peer; the measurement is complete
        pass


if __name__ == "__main__":
    run(main)
