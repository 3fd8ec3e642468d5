"""python -m stream.run: live speech -> per-utterance emotion messages on ZeroMQ.

Listens to microphones (--mic), replays files (--file) or the bundled demo (--demo), several at once if
you like (one stream each, one model for all); cuts the audio into utterances (webrtcvad), transcribes
them while they are spoken (faster-whisper; partial transcripts and provisional emotions), and when an
utterance ends publishes the final transcript and emotion (FDRL on the Whisper encoder frames + the
transcript). Subscribe with `python -m stream.subscribe`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from fdrl_core.cli import (
    EXIT_FAILURE,
    ArgumentParser,
    InputError,
    add_debug_flag,
    debug_requested,
    finite_float,
    first_line,
    run_main,
)
from stream.publisher import DEFAULT_ENDPOINT

if TYPE_CHECKING:
    from stream.config import PipelineConfig

# numpy, faster-whisper & co. are imported inside the functions, after main() has installed the signal
# handlers: a Ctrl-C or SIGTERM while a busy machine is still loading them is a clean stop, not a traceback

STOP_TIMEOUT_S = 4.5  # Ctrl-C/SIGTERM -> exit, whatever the audio driver or a pass in flight does

EPILOG = """examples:
  python -m stream.run --demo                      # bundled recording, prints one line per utterance
  python -m stream.run --mic                       # default microphone; Ctrl-C finishes the utterance and exits
  python -m stream.run --mic --device 2            # see --list-devices
  python -m stream.run --file talk.wav --realtime  # replay paced like a microphone
  python -m stream.run --mic 2 --mic 3 --file a.wav --realtime  # three streams, one model, one process
  python -m stream.subscribe                       # in another terminal: watch the messages
  python -m stream.run --demo --realtime --dashboard  # and open http://127.0.0.1:8765/
  python -m stream.run --file talk.wav --report talk.html  # one HTML file: timeline, transcript, scores

messages: topics 'emotion', 'transcript', 'status' as multipart [topic, json]; the contract is
stream/schema/*.json. Beyond loopback, use CURVE (python -m stream.keys; --curve-secret) or say
--insecure-bind-any.

exit status: 0 done or stopped (Ctrl-C/SIGTERM publish the utterance in flight and end within
--stop-timeout seconds, whatever the audio driver does), 1 the run failed (the audio source stopped
delivering, an unexpected error), 2 a usage or input error (bad argument, no microphone, unreadable
file, bad model folder, endpoint malformed or in use). Errors are one line; --debug adds the traceback."""


def build_parser() -> argparse.ArgumentParser:
    from stream.asr import AsrConfig
    from stream.config import PipelineConfig
    from stream.vad import VadConfig

    d_vad, d_asr, d_pipe = VadConfig(), AsrConfig(), PipelineConfig()
    ap = ArgumentParser(prog="python -m stream.run", description=__doc__.split("\n\n")[1],
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
    mod.add_argument("--warm-up", default="auto", choices=("auto", "on", "off"),
                     help="one throw-away pass through both models before the audio starts; auto: on a GPU "
                          "path (--asr-device cuda, --emotion-device cuda/auto, TensorRT), where the first "
                          "call pays CUDA's lazy set-up (default: %(default)s)")
    mod.add_argument("--language", default=d_asr.language, help="language for multilingual Whisper models")
    mod.add_argument("--beam-size", type=int, default=d_asr.beam_size, help="final-pass beam (default: %(default)s)")
    mod.add_argument("--partial-every", type=finite_float, default=None, metavar="S",
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
    mod.add_argument("--stable-passes", type=int, default=d_pipe.stable_passes, metavar="N",
                     help="a provisional emotion is marked stable once its label held for N passes "
                          "(default: %(default)s)")
    mod.add_argument("--stable-confidence", type=finite_float, default=d_pipe.stable_confidence, metavar="P",
                     help="... and its latest probability is at least P (default: %(default)s)")
    mod.add_argument("--no-speech-threshold", type=finite_float, default=d_asr.no_speech_threshold,
                     help="hallucination guard: Whisper no-speech probability (default: %(default)s)")
    mod.add_argument("--logprob-threshold", type=finite_float, default=d_asr.logprob_threshold,
                     help="hallucination guard: minimum average log-probability (default: %(default)s)")

    vad = ap.add_argument_group("voice activity detection")
    vad.add_argument("--vad-aggressiveness", type=int, default=d_vad.aggressiveness, choices=(0, 1, 2, 3),
                     help="webrtcvad mode, 3 = strictest (default: %(default)s)")
    vad.add_argument("--frame-ms", type=int, default=d_vad.frame_ms, choices=(10, 20, 30),
                     help="frame size (default: %(default)s)")
    vad.add_argument("--preroll-ms", type=int, default=d_vad.preroll_ms,
                     help="audio kept before speech onset (default: %(default)s)")
    vad.add_argument("--hangover-ms", type=int, default=d_vad.hangover_ms,
                     help="silence that confirms the end of an utterance; live sources publish an early final "
                          "after --tail-ms already (default: %(default)s)")
    vad.add_argument("--tail-ms", type=int, default=d_vad.tail_ms,
                     help="audio kept after the last speech frame; also the pause after which a live source "
                          "publishes an early final (longer: fewer finals revised after a pause inside a sentence, "
                          "later finals) (default: %(default)s)")
    vad.add_argument("--end-gate-db", type=finite_float, default=d_vad.end_gate_db, metavar="DB",
                     help="end of speech: a speech frame must be this much louder than the background, so "
                          "webrtcvad's own overhang is not waited for; 0 trusts webrtcvad alone (default: "
                          "%(default)s)")
    vad.add_argument("--min-speech-ms", type=int, default=d_vad.min_speech_ms,
                     help="shorter bursts are ignored as noise (default: %(default)s)")
    vad.add_argument("--max-utterance", type=finite_float, default=d_vad.max_utterance_s, metavar="S",
                     help="longer speech is split (default: %(default)s)")

    pub = ap.add_argument_group("publishing and output")
    pub.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                     help="ZeroMQ bind address, tcp://HOST:PORT (PORT * = any free port; the bound address is "
                          "printed and in the status messages) or ipc://PATH (default: %(default)s)")
    pub.add_argument("--curve-secret", metavar="FILE",
                     help="encrypt with CURVE using this server secret key (python -m stream.keys makes one); "
                          "subscribers then need the matching public key")
    pub.add_argument("--curve-clients", metavar="DIR",
                     help="with --curve-secret: only subscribers whose public key (*.key) is in DIR may connect")
    pub.add_argument("--insecure-bind-any", action="store_true",
                     help="allow a non-loopback --endpoint without CURVE (anyone who reaches the port can "
                          "subscribe; only on a trusted, firewalled network)")
    pub.add_argument("--stream-id", help="stream id in every message (default: host-pid-random); with several "
                                         "sources, stream i gets ID-i")
    pub.add_argument("--heartbeat", type=finite_float, default=1.0, metavar="S",
                     help="status interval (default: %(default)s)")
    pr = pub.add_mutually_exclusive_group()
    pr.add_argument("--print", dest="print_lines", action="store_true", default=None,
                    help="print one line per utterance (default on for --file/--demo)")
    pr.add_argument("--no-print", dest="print_lines", action="store_false")
    pub.add_argument("--print-partials", action="store_true", help="with --print: also partial transcripts/emotions")
    pub.add_argument("--dashboard", nargs="?", const="127.0.0.1:8765", metavar="[HOST:]PORT",
                     help="also serve the live dashboard page (default 127.0.0.1:8765; loopback only); when the "
                          "input ends it stays up until Ctrl-C")
    pub.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report of the run at the end")
    pub.add_argument("--stop-timeout", type=finite_float, default=STOP_TIMEOUT_S, metavar="S",
                     help="after Ctrl-C/SIGTERM, finish the utterance in flight for at most S seconds, then exit "
                          "regardless (default: %(default)s)")
    add_debug_flag(pub)
    return ap


def config_from_args(args) -> PipelineConfig:
    from stream.asr import AsrConfig
    from stream.config import PipelineConfig
    from stream.emotion import EmotionConfig
    from stream.vad import VadConfig

    vad = VadConfig(aggressiveness=args.vad_aggressiveness, frame_ms=args.frame_ms, preroll_ms=args.preroll_ms,
                    hangover_ms=args.hangover_ms, tail_ms=min(args.tail_ms, args.hangover_ms),
                    min_speech_ms=args.min_speech_ms, max_utterance_s=args.max_utterance,
                    end_gate_db=args.end_gate_db)
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
                          stable_passes=args.stable_passes, stable_confidence=args.stable_confidence,
                          stream_id=args.stream_id, print_lines=printing, print_partials=args.print_partials)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Setup errors that are the user's input (model folders, files, devices, endpoints): exit 2."""
    from fdrl_core.assets import AssetError
    from stream.emotion import ModelMissing

    errors: list[type[BaseException]] = [AssetError, ModelMissing]
    try:
        from stream.backends import BackendError

        errors.append(BackendError)
    except ImportError:
        pass
    return tuple(errors)


def _check_args(args) -> None:
    if args.loop < 1:
        raise InputError(f"--loop must be >= 1, not {args.loop}")
    if args.stop_timeout <= 0:
        raise InputError("--stop-timeout must be > 0")
    if args.device is not None and not args.mic:
        raise InputError("--device only applies to --mic")
    if args.beam_size is not None and args.beam_size < 1:
        raise InputError("--beam-size must be >= 1")
    if args.partial_every is not None and args.partial_every < 0:
        raise InputError("--partial-every must be >= 0")


def _load(what: str, fn):
    """Model loading: a library's ValueError/RuntimeError about the folder or settings the user chose is
    an input error naming the model, not a crash."""
    try:
        return fn()
    except (InputError, *_expected_errors()):
        raise
    except (ValueError, RuntimeError, OSError) as e:
        msg = first_line(e)
        raise InputError(msg if msg.lower().startswith("cannot load") else f"cannot load the {what}: {msg}") from e


def _warm_up(args, recognizer, emotion) -> float | None:
    """One pass of 3 s of faint noise through Whisper and the emotion model; seconds taken, or None when
    skipped. On a GPU the first call creates cuBLAS handles and loads kernels (an H200 took 1.3 s for the
    demo's first utterance, 33-43 ms for the next ones): that belongs to start-up, not to an utterance."""
    gpu = (args.asr_device != "cpu" or args.emotion_device != "cpu" or args.backend == "tensorrt"
           or emotion.name.startswith("tensorrt"))
    if args.warm_up == "off" or (args.warm_up == "auto" and not gpu):
        return None
    import numpy as np

    from fdrl_core.audio import SAMPLE_RATE

    t0 = time.monotonic()
    noise = (0.01 * np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
    hyp = recognizer.transcribe(noise)
    emotion.classify(hyp.frames, "warm up")
    return time.monotonic() - t0


def run(args, state: dict, watch: SignalWatch | None = None) -> int:
    from stream.emotion import resolve_model
    from stream.publisher import Security
    from stream.sources import list_devices, open_source, stop_source

    if args.list_devices:
        print(list_devices())
        return 0
    _check_args(args)
    try:
        cfg = config_from_args(args).validate()
    except ValueError as e:
        raise InputError(str(e)) from e
    wanted = [("mic", None, dev or args.device) for dev in args.mic or []]
    wanted += [("file", path, None) for path in args.file or []]
    wanted += [("demo", None, None)] if args.demo else []
    if not wanted:
        raise InputError("no audio source: give --mic, --file PATH or --demo (see --help)")
    if any(not path.strip() for path in args.file or []):
        raise InputError("--file needs a path")
    sources = []
    try:
        for kind, path, device in wanted:
            sources.append(open_source(kind, path=path, device=device, realtime=args.realtime, loop=args.loop,
                                       frame_ms=cfg.vad.frame_ms, queue_seconds=cfg.queue_seconds))
        model = resolve_model(cfg.emotion.model)  # fail before the slow part, and before binding:
        from stream.backends import model_kind

        if model_kind(model) == "checkpoint":  # a broken config.json/labels.json is said first, alone
            from fdrl_core.checkpoint import read_config

            read_config(model)
    except BaseException:
        for src in sources:
            stop_source(src, "close")
        raise
    for src in sources:
        for w in src.warnings:
            log(f"stream.run: warning: {w}")

    from stream.dashboard.attach import RunViews
    from stream.publisher import Publisher

    views = RunViews.from_args(args, label=cfg.endpoint)  # --dashboard/--report: checked before the slow part
    security = Security(secret_key_file=args.curve_secret, client_keys_dir=args.curve_clients,
                        allow_insecure=args.insecure_bind_any)
    publisher = Publisher(cfg.endpoint, sndhwm=cfg.sndhwm, security=security)  # subscribers connect while we load
    state["publisher"] = publisher
    shown = [len(src.warnings) for src in sources]
    try:
        views.start(publisher)
        how = ("CURVE, " + ("clients from " + args.curve_clients if args.curve_clients else "any client key")
               if publisher.curve else "plaintext")
        log(f"publishing on {publisher.endpoint} ({how}); " + ("source: " + sources[0].describe()
            if len(sources) == 1 else
            f"{len(sources)} sources: " + "; ".join(f"[{i}] {src.describe()}" for i, src in enumerate(sources))))
        if not publisher.loopback:
            log(f"stream.run: warning: {publisher.endpoint} is reachable from other machines"
                + ("" if publisher.curve else ": anyone who reaches it can subscribe (firewall it)"))
        t0 = time.monotonic()
        from stream.asr import Recognizer
        from stream.emotion import EmotionStage
        from stream.pipeline import Pipeline

        name = args.asr_model or "tiny.en (bundled)"
        recognizer = _load(f"Whisper model {name}", lambda: Recognizer(cfg.asr))
        emotion = _load(f"emotion model {args.model or ''}".rstrip(), lambda: EmotionStage(cfg.emotion))
        pipeline = Pipeline(cfg, sources, recognizer, emotion, publisher)
        loaded = time.monotonic() - t0
        warm = _load("models (warm-up pass)", lambda: _warm_up(args, recognizer, emotion))
        log(f"models loaded in {loaded:.1f} s" + (f" (+{warm:.1f} s warm-up)" if warm is not None else "")
            + f": whisper {recognizer.model_name} ({cfg.asr.compute_type}, encoder window "
              f"{recognizer.window.describe()}), emotion {emotion.name}")
        state["pipeline"] = pipeline
        if watch is not None:
            watch.pipeline = pipeline
        _install_signals(pipeline)
        t1 = time.monotonic()
        code = pipeline.run()
        log(pipeline.summary(time.monotonic() - t1))
        for src, n in zip(sources, shown):
            for w in src.warnings[n:]:
                log(f"stream.run: warning: {w}")
        if pipeline.source_hung and not pipeline.source_error:
            for src in sources:
                log(f"stream.run: warning: {src.error or 'the audio source did not stop in time'}")
        if pipeline.source_error:
            log(f"stream.run: {pipeline.source_error}")
        views.finish(stopped=pipeline.stop_requested.is_set(),
                     meta={"source": "; ".join(src.describe() for src in sources)})
        return code
    finally:
        if not getattr(state.get("pipeline"), "source_hung", False):
            for src in sources:
                stop_source(src, "close")
        publisher.close()
        views.close()


def _install_signals(pipeline) -> None:
    """First Ctrl-C/SIGTERM/SIGHUP: stop capturing, finish and publish the utterance in flight (the
    SignalWatch deadline ends the process if that takes too long). Second: leave at once."""

    def handler(signum, frame):
        if pipeline.stop_requested.is_set():  # second Ctrl-C: leave now
            log("stream.run: interrupted again, exiting without finishing")
            hard_exit(130)
        log(f"stream.run: {signal.Signals(signum).name}: finishing the utterance in flight (again to abort)")
        pipeline.request_stop()  # returns at once: the source is released on its own thread

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


class SignalWatch:
    """The deadline after a stop signal, kept by a thread that does not depend on the main thread.

    Python runs signal handlers in the main thread, between bytecodes; while the main thread is inside
    a long C call (loading a model, a stuck driver) they wait. The C-level handler still writes the
    signal number to the wakeup fd at once, and this thread, blocked on that fd, starts the deadline:
    if the run has not ended `timeout` s after the first signal it exits the process (0 before the
    stream started: nothing to lose; 1 after: the utterance in flight could not be finished). A second
    signal exits at once."""

    def __init__(self, timeout: float = STOP_TIMEOUT_S):
        self.timeout = timeout
        self.pipeline = None
        self.finished = threading.Event()
        self.r, self.w = os.pipe()
        os.set_blocking(self.w, False)
        self.old_fd = signal.set_wakeup_fd(self.w, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="signal-watch", daemon=True).start()

    def _watch(self) -> None:
        seen = 0
        while True:
            try:
                data = os.read(self.r, 16)  # blocks (without the GIL) until a signal arrives
            except OSError:
                return
            if not data or self.finished.is_set():
                return
            if seen == 0:
                threading.Thread(target=self._deadline, name="stop-deadline", daemon=True).start()
            seen += len(data)
            if seen >= 2:  # a second signal: the main thread's handler leaves at once, if it can run
                if not self.finished.wait(0.5):
                    hard_exit(130)
                return

    def _deadline(self) -> None:
        if self.finished.wait(self.timeout):
            return
        pipeline = self.pipeline
        if pipeline is None or pipeline.t_source is None:
            log("stream.run: stopped before the stream started (nothing to publish yet)")
            hard_exit(0)
        if pipeline.done.is_set():  # the stream ended; only the publisher's linger is left
            return
        log(f"stream.run: not finished {self.timeout:g} s after the stop request "
            "(audio driver or a pass stuck); exiting now")
        hard_exit(EXIT_FAILURE)

    def close(self) -> None:
        self.finished.set()
        signal.set_wakeup_fd(self.old_fd)
        try:
            os.write(self.w, b"\0")  # wake the watcher so it sees `finished` and ends
        except OSError:
            pass
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass


def hard_exit(code: int) -> None:
    """Exit without running atexit handlers or joining threads: used when the audio driver is stuck
    (PortAudio's own exit handler would wait on it forever)."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, service stop, terminal closed


class _StopBeforeStart(BaseException):  # not swallowed by library `except Exception`
    pass


_setup_stop = threading.Event()


def _stop_during_setup(signum, frame):
    if _setup_stop.is_set():  # again while the first one unwinds: leave now
        hard_exit(130)
    _setup_stop.set()
    raise _StopBeforeStart(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    for sig in STOP_SIGNALS:  # first: loading takes seconds; the pipeline installs its own once it runs
        signal.signal(sig, _stop_during_setup)
    watch = SignalWatch()
    state: dict = {}
    try:
        args = build_parser().parse_args(argv)
        watch.timeout = args.stop_timeout
        if args.debug:  # the audio driver's and onnxruntime's own diagnostics too
            os.environ["FDRL_DEBUG"] = "1"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no weight-loading bars between our lines

        def body() -> int:
            try:
                return run(args, state, watch)
            except _StopBeforeStart as e:
                log(f"stream.run: {e}: stopped before the stream started (nothing to publish yet)")
                return 0

        code = run_main("stream.run", body, debug=debug_requested(args), input_errors=_expected_errors())
    except _StopBeforeStart as e:  # while parsing the arguments
        log(f"stream.run: {e}: stopped before the stream started (nothing to publish yet)")
        code = 0
    finally:
        watch.close()
    from stream.sources import driver_hung

    if driver_hung.is_set():  # the driver was abandoned mid-call: PortAudio's exit handler would hang
        hard_exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
