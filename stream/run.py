"""python -m stream.run: live speech -> per-utterance emotion messages on ZeroMQ.

Listens to a microphone (--mic), replays a file (--file) or the bundled demo (--demo); cuts the audio into
utterances (webrtcvad), transcribes them while they are spoken (faster-whisper; partial transcripts and
provisional emotions), and when an utterance ends publishes the final transcript and emotion (FDRL on the
Whisper encoder frames + the transcript). Subscribe with `python -m stream.subscribe`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from stream.asr import AsrConfig
from stream.config import PipelineConfig
from stream.emotion import EmotionConfig
from stream.publisher import DEFAULT_ENDPOINT
from stream.vad import VadConfig

EPILOG = """examples:
  python -m stream.run --demo                      # bundled recording, prints one line per utterance
  python -m stream.run --mic                       # default microphone; Ctrl-C finishes the utterance and exits
  python -m stream.run --mic --device 2            # see --list-devices
  python -m stream.run --file talk.wav --realtime  # replay paced like a microphone
  python -m stream.run --mic 2 --mic 3 --file a.wav --realtime  # three streams, one model, one process
  python -m stream.subscribe                       # in another terminal: watch the messages

messages: topics 'emotion', 'transcript', 'status' as multipart [topic, json]; the contract is
stream/schema/*.json. Exit status: 0 done or stopped, 1 the audio source failed, 2 bad arguments or
setup (no microphone, unreadable file, missing model, endpoint in use)."""


def build_parser() -> argparse.ArgumentParser:
    d_vad, d_asr = VadConfig(), AsrConfig()
    ap = argparse.ArgumentParser(prog="python -m stream.run", description=__doc__.split("\n\n")[1],
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_argument_group("audio sources (one or more; each is its own stream with its own stream id)")
    src.add_argument("--mic", nargs="?", action="append", const="", metavar="DEVICE",
                     help="capture from a microphone (sounddevice/PortAudio): the default one, or DEVICE "
                          "(index or name); repeat for several microphones")
    src.add_argument("--file", action="append", metavar="PATH",
                     help="replay a WAV/FLAC file (any rate and channel count); repeat for several streams")
    src.add_argument("--demo", action="store_true", help="replay the bundled demo recording (stream/demo/demo.wav)")
    src.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    src.add_argument("--device", help="input device index or name for a --mic given without one "
                                      "(default: the system default)")
    src.add_argument("--realtime", action="store_true",
                     help="--file/--demo: pace the replay like a microphone (default: as fast as possible, "
                          "then without partial passes unless --partial-every is given)")
    src.add_argument("--loop", type=int, default=1, metavar="N", help="--file/--demo: play N times (soak tests)")

    mod = ap.add_argument_group("models")
    mod.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                     help="emotion model backend (default: auto = best available for --model)")
    mod.add_argument("--model", help="FDRL checkpoint folder, ONNX folder or TensorRT engine "
                                     "(default: $FDRL_MODEL, else the bundled demo model)")
    mod.add_argument("--asr-model", help="CTranslate2 Whisper folder (default: bundled tiny.en)")
    mod.add_argument("--compute-type", default=d_asr.compute_type,
                     help="CTranslate2 compute type (default: %(default)s)")
    mod.add_argument("--asr-device", default=d_asr.device,
                     help="CTranslate2 device: cpu or cuda (default: %(default)s)")
    mod.add_argument("--emotion-device", default="cpu", choices=("cpu", "cuda", "auto"),
                     help="torch/onnxruntime device for the emotion model (default: %(default)s)")
    mod.add_argument("--language", default=d_asr.language, help="language for multilingual Whisper models")
    mod.add_argument("--beam-size", type=int, default=d_asr.beam_size, help="final-pass beam (default: %(default)s)")
    mod.add_argument("--partial-every", type=float, default=None, metavar="S",
                     help=f"a partial transcript per S seconds of new speech; 0 disables (default: "
                          f"{d_asr.partial_every_s} for microphones and --realtime; a file played as fast "
                          f"as possible gets partials only when this is given)")
    mod.add_argument("--no-partial-emotion", action="store_true",
                     help="partial transcripts only, no provisional emotion")
    mod.add_argument("--no-speculative", action="store_true",
                     help="do not start the final pass during the end-of-speech hangover (live sources)")
    mod.add_argument("--no-early-final", action="store_true",
                     help="live sources: publish the final only after the hangover confirmed the end (default: "
                          "as soon as the pause fixes the audio, with a revised final if speech resumes)")
    mod.add_argument("--stable-passes", type=int, default=2, metavar="N",
                     help="a provisional emotion is marked stable once its label held for N passes "
                          "(default: %(default)s)")
    mod.add_argument("--no-speech-threshold", type=float, default=d_asr.no_speech_threshold,
                     help="hallucination guard: Whisper no-speech probability (default: %(default)s)")
    mod.add_argument("--logprob-threshold", type=float, default=d_asr.logprob_threshold,
                     help="hallucination guard: minimum average log-probability (default: %(default)s)")

    vad = ap.add_argument_group("voice activity detection")
    vad.add_argument("--vad-aggressiveness", type=int, default=d_vad.aggressiveness, choices=(0, 1, 2, 3),
                     help="webrtcvad mode, 3 = strictest (default: %(default)s)")
    vad.add_argument("--frame-ms", type=int, default=d_vad.frame_ms, choices=(10, 20, 30),
                     help="frame size (default: %(default)s)")
    vad.add_argument("--preroll-ms", type=int, default=d_vad.preroll_ms,
                     help="audio kept before speech onset (default: %(default)s)")
    vad.add_argument("--hangover-ms", type=int, default=d_vad.hangover_ms,
                     help="silence that ends an utterance (default: %(default)s)")
    vad.add_argument("--tail-ms", type=int, default=d_vad.tail_ms,
                     help="audio kept after the last speech frame (default: %(default)s)")
    vad.add_argument("--min-speech-ms", type=int, default=d_vad.min_speech_ms,
                     help="shorter bursts are ignored as noise (default: %(default)s)")
    vad.add_argument("--max-utterance", type=float, default=d_vad.max_utterance_s, metavar="S",
                     help="longer speech is split (default: %(default)s)")

    pub = ap.add_argument_group("publishing and output")
    pub.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="ZeroMQ PUB bind address (default: %(default)s)")
    pub.add_argument("--stream-id", help="stream id in every message (default: host-pid-random); with several "
                                         "sources, stream i gets ID-i")
    pub.add_argument("--heartbeat", type=float, default=1.0, metavar="S", help="status interval (default: %(default)s)")
    pr = pub.add_mutually_exclusive_group()
    pr.add_argument("--print", dest="print_lines", action="store_true", default=None,
                    help="print one line per utterance (default on for --file/--demo)")
    pr.add_argument("--no-print", dest="print_lines", action="store_false")
    pub.add_argument("--print-partials", action="store_true", help="with --print: also partial transcripts/emotions")
    pub.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return ap


def config_from_args(args) -> PipelineConfig:
    vad = VadConfig(aggressiveness=args.vad_aggressiveness, frame_ms=args.frame_ms, preroll_ms=args.preroll_ms,
                    hangover_ms=args.hangover_ms, tail_ms=min(args.tail_ms, args.hangover_ms),
                    min_speech_ms=args.min_speech_ms, max_utterance_s=args.max_utterance)
    partial_every = AsrConfig.partial_every_s if args.partial_every is None else args.partial_every
    asr = AsrConfig(model=args.asr_model, device=args.asr_device, compute_type=args.compute_type,
                    language=args.language, beam_size=args.beam_size, partial_every_s=partial_every,
                    no_speech_threshold=args.no_speech_threshold, logprob_threshold=args.logprob_threshold)
    printing = args.print_lines if args.print_lines is not None else not args.mic
    emotion = EmotionConfig(backend=args.backend, model=args.model, device=args.emotion_device)
    return PipelineConfig(vad=vad, asr=asr, emotion=emotion,
                          endpoint=args.endpoint, heartbeat_s=args.heartbeat,
                          partial_emotion=not args.no_partial_emotion, speculative=not args.no_speculative,
                          early_final=not args.no_early_final, fast_partials=args.partial_every is not None,
                          stable_passes=args.stable_passes,
                          stream_id=args.stream_id, print_lines=printing, print_partials=args.print_partials)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from fdrl_core.assets import AssetError
    from fdrl_core.audio import AudioError
    from fdrl_core.checkpoint import CheckpointError
    from stream.emotion import ModelMissing
    from stream.publisher import PublisherError
    from stream.sources import SourceError

    errors: list[type[BaseException]] = [AssetError, AudioError, CheckpointError, ModelMissing, PublisherError,
                                         SourceError, ValueError, RuntimeError]
    try:
        from stream.backends import BackendError

        errors.append(BackendError)
    except ImportError:
        pass
    return tuple(errors)


def run(args) -> int:
    from stream.emotion import resolve_model
    from stream.sources import list_devices, open_source

    if args.list_devices:
        print(list_devices())
        return 0
    cfg = config_from_args(args).validate()
    wanted = [("mic", None, dev or args.device) for dev in args.mic or []]
    wanted += [("file", path, None) for path in args.file or []]
    wanted += [("demo", None, None)] if args.demo else []
    if not wanted:
        raise ValueError("no audio source: give --mic, --file PATH or --demo (see --help)")
    sources = []
    try:
        for kind, path, device in wanted:
            sources.append(open_source(kind, path=path, device=device, realtime=args.realtime, loop=args.loop,
                                       frame_ms=cfg.vad.frame_ms, queue_seconds=cfg.queue_seconds))
        resolve_model(cfg.emotion.model)  # fail before the slow part
    except BaseException:
        for src in sources:
            src.close()
        raise

    from stream.publisher import Publisher

    publisher = Publisher(cfg.endpoint, sndhwm=cfg.sndhwm)  # bound early: subscribers connect while we load
    try:
        log(f"publishing on {cfg.endpoint}; " + ("source: " + sources[0].describe() if len(sources) == 1 else
            f"{len(sources)} sources: " + "; ".join(f"[{i}] {src.describe()}" for i, src in enumerate(sources))))
        t0 = time.monotonic()
        from stream.asr import Recognizer
        from stream.emotion import EmotionStage
        from stream.pipeline import Pipeline

        recognizer = Recognizer(cfg.asr)
        emotion = EmotionStage(cfg.emotion)
        pipeline = Pipeline(cfg, sources, recognizer, emotion, publisher)
        log(f"models loaded in {time.monotonic() - t0:.1f} s: whisper {recognizer.model_name} "
            f"({cfg.asr.compute_type}, encoder window {recognizer.window.describe()}), emotion {emotion.name}")
        _install_signals(pipeline)
        t1 = time.monotonic()
        code = pipeline.run()
        log(pipeline.summary(time.monotonic() - t1))
        if pipeline.source_error:
            log(f"stream.run: {pipeline.source_error}")
        return code
    finally:
        for src in sources:
            src.close()
        publisher.close()


def _install_signals(pipeline) -> None:
    def handler(signum, frame):
        if pipeline.stop_requested.is_set():  # second Ctrl-C: leave now
            log("stream.run: interrupted again, exiting without finishing")
            os._exit(130)
        log(f"stream.run: {signal.Signals(signum).name}: finishing the utterance in flight (again to abort)")
        pipeline.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _StopBeforeStart(BaseException):  # not swallowed by library `except Exception`
    pass


def _stop_during_setup(signum, frame):
    raise _StopBeforeStart


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no weight-loading bars between our lines
    signal.signal(signal.SIGTERM, _stop_during_setup)  # the pipeline installs its own once it runs
    try:
        return run(args)
    except _StopBeforeStart:
        log("stream.run: stopped before the stream started")
        return 0
    except _expected_errors() as e:
        log(f"stream.run: {e}")
        return 2
    except KeyboardInterrupt:  # before the pipeline's own handler is installed
        log("stream.run: interrupted")
        return 130
    except Exception as e:
        if args.debug:
            raise
        log(f"stream.run: unexpected error: {type(e).__name__}: {e} (--debug shows the traceback)")
        return 3


if __name__ == "__main__":
    sys.exit(main())
