"""WhisperLive (collabora/WhisperLive) through its own streaming interface: its TranscriptionServer
(faster_whisper backend, our CTranslate2 folder as the custom model, single model) on a free local port,
and a websocket client speaking its protocol as its own client does (JSON options, float32 frames,
END_OF_AUDIO). Segments marked "completed" are finals (with their audio span); the open last segment is
the partial. Its defaults otherwise (beam 5 hard-coded, VAD on as its client sets, same_output_threshold)."""

from __future__ import annotations

import json
import socket
import threading
import time

from _protocol import cpu_s, emit, feed_paced, read_wav_int16, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(job: dict) -> None:
    import websocket  # websocket-client, a WhisperLive dependency
    from whisper_live.server import TranscriptionServer

    port = free_port()
    server = TranscriptionServer()
    threading.Thread(target=server.run, args=("127.0.0.1", port), daemon=True, name="whisperlive-server",
                     kwargs={"backend": "faster_whisper", "faster_whisper_custom_model_path": job["model"],
                             "single_model": True}).start()
    t_load = time.monotonic()
    ws = None
    while ws is None:
        try:
            ws = websocket.create_connection(f"ws://127.0.0.1:{port}", timeout=5)
        except OSError:
            if time.monotonic() - t_load > 120:
                raise RuntimeError("the WhisperLive server did not start within 120 s") from None
            time.sleep(0.2)
    ws.send(json.dumps({"uid": "fdrl-bench", "language": "en", "task": "transcribe", "model": job["model"],
                        "use_vad": True}))
    ready = threading.Event()
    finals: set = set()
    closed = threading.Event()

    def receive() -> None:
        ws.settimeout(None)
        while True:
            try:
                msg = json.loads(ws.recv())
            except Exception:  # noqa: BLE001 - the socket closed: the stream is over
                closed.set()
                return
            if msg.get("message") == "SERVER_READY":
                ready.set()
            if msg.get("status") == "ERROR":
                emit("error", message=f"WhisperLive: {msg.get('message')}")
            for seg in msg.get("segments") or []:
                text = (seg.get("text") or "").strip()
                if not text:
                    continue
                start, end = float(seg["start"]), float(seg["end"])
                if seg.get("completed"):
                    if (start, text) not in finals:
                        finals.add((start, text))
                        emit("final", text=text, start=start, end=end)
                else:
                    emit("partial", text=text, start=start, end=end)

    threading.Thread(target=receive, daemon=True, name="whisperlive-client").start()
    if not ready.wait(180):
        raise RuntimeError("WhisperLive never sent SERVER_READY (model not loaded within 180 s)")
    emit("ready", load_s=round(time.monotonic() - t_load, 2))
    pcm = read_wav_int16(job["wav"])
    fed = feed_paced(pcm, lambda block: ws.send_binary((block.astype("float32") / 32768.0).tobytes()))
    time.sleep(job.get("tail_s", 5.0))  # finals of the last utterance, before telling it the audio ended
    emit("done", audio_s=fed["audio_s"], cpu_s=round(cpu_s() - fed["cpu0"], 3),
         fed_late_blocks=fed["fed_late_blocks"])
    try:
        ws.send_binary(b"END_OF_AUDIO")
        closed.wait(5)
        ws.close()
    except Exception:  # noqa: BLE001 - shutting down a peer; the measurement is complete
        pass


if __name__ == "__main__":
    run(main)
