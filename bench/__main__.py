"""python -m bench [<benchmark>] [options]: each benchmark is a module with add_arguments(parser) and run(args).
Without a benchmark name, the headline runs (true end of speech -> final emotion, ours vs the baseline)."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

from fdrl_core.cli import ArgumentParser, add_debug_flag, check_output_dir, debug_requested, run_main

# name -> (module, one-line help); a new benchmark is one more entry here
BENCHMARKS = {
    "headline": ("bench.headline", "the default: TRUE end of speech -> final emotion at a subscriber, ours vs the "
                 "naive baseline, on a generated paced stream"),
    "peers": ("bench.peers", "the same stream through RealtimeSTT, WhisperLive, whisper-streaming, WhisperLiveKit "
              "(own venvs, offline, same model) vs ours"),
    "backends": ("bench.backends", "emotion backends side by side: torch eager vs onnxruntime (vs TensorRT)"),
    "pipeline": ("bench.pipeline", "end of speech -> final emotion: our run-time vs the naive pipeline, one file"),
    "scaling": ("bench.scaling", "latency and CPU vs utterance length (1-15 s) and concurrent streams (1, 2, 4)"),
    "multistream": ("bench.multistream", "N real-time streams in one process: true end of speech -> final emotion, "
                                         "memory per stream"),
    "windows": ("bench.windows", "WER and encoder cost of utterance-sized encoder windows vs the 30 s window"),
    "gpu": ("bench.gpu", "the CUDA/TensorRT path on this machine's NVIDIA GPU, checked against the CPU"),
    "dashboard": ("bench.dashboard", "the live dashboard in headless Chromium: publish -> page delay, 1 vs 8 streams"),
}
GPU_ONLY = {"gpu"}  # `all` leaves these out: on a CPU machine they have nothing to measure
# options `all` passes on to every benchmark that has them
SHARED = ("model", "out", "backend", "audio", "device", "repeat")

ALL_HELP = ("every benchmark but peers in turn (headline, backends, pipeline, scaling); one failing does not stop "
            "the others")


def _add_all(sub) -> argparse.ArgumentParser:
    from bench.common import DEFAULT_OUT

    p = sub.add_parser("all", help=ALL_HELP, description=ALL_HELP + ". Options are passed to the benchmarks that "
                       "take them; run a benchmark on its own for its other options.")
    p.add_argument("--model", default=None, help="FDRL checkpoint folder (default: $FDRL_MODEL, else the demo model)")
    p.add_argument("--audio", default=None, help="speech file for pipeline and scaling (default: the bundled demo)")
    p.add_argument("--backend", default=None, help="emotion backend for pipeline and scaling (default: auto)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="hardware path (default: auto)")
    p.add_argument("--repeat", type=int, default=None, help="real-time replays per pipeline (default 1)")
    p.add_argument("--out", default=None, help=f"results folder (default {DEFAULT_OUT})")
    return p


def _run_one(name: str, module, args) -> int:
    from bench.common import DEFAULT_OUT

    def body():
        if hasattr(args, "out") and not getattr(args, "one", None):  # not after minutes of measuring
            check_output_dir(args.out or DEFAULT_OUT)
        return module.run(args)

    from stream.backends import BackendError

    # the benchmarks report a bad --audio/--model/--backend as ValueError; a backend this install cannot
    # open (torch absent, no TensorRT) is the user's setup, said in one line
    return run_main(f"bench {name}", body, debug=debug_requested(args), input_errors=(ValueError, BackendError))


def _run_all(args, parsers: dict, modules: dict) -> int:
    codes = {}
    for name, p in parsers.items():
        if name in GPU_ONLY or name == "peers":  # GPU-only, or installs GBs of other projects: on request
            continue
        argv = []
        for opt in SHARED:
            value = getattr(args, opt)
            if value is not None and any(f"--{opt}" in a.option_strings for a in p._actions):
                argv += [f"--{opt}", str(value)]
        print(f"== python -m bench {name} {shlex.join(argv)}", file=sys.stderr, flush=True)
        sub_args = p.parse_args(argv)
        sub_args.debug = args.debug
        sub_args.command_line = f"python -m bench {name} {shlex.join(argv)}".strip()
        codes[name] = _run_one(name, modules[name], sub_args)
        if codes[name] == 130:
            break
    failed = [n for n, c in codes.items() if c]
    if failed:
        print(f"bench all: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no weight-loading bars between our lines
    parser = ArgumentParser(prog="python -m bench", description="Benchmarks of the FDRL run-time. Without "
                            "a benchmark name the headline runs. Results go to ./bench-results/ (or --out) "
                            "as JSON + markdown, with the machine described.")
    sub = parser.add_subparsers(dest="benchmark", metavar="{" + ",".join([*BENCHMARKS, "all"]) + "}")
    modules, parsers = {}, {}
    for name, (module, help_text) in BENCHMARKS.items():
        modules[name] = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=getattr(modules[name], "__doc__", help_text),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        modules[name].add_arguments(p)
        add_debug_flag(p)
        parsers[name] = ArgumentParser(prog=f"python -m bench {name}")
        modules[name].add_arguments(parsers[name])
        add_debug_flag(parsers[name])
    add_debug_flag(_add_all(sub))
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["headline", *argv]  # the default benchmark
    args = parser.parse_args(argv)
    if args.benchmark is None:
        parser.print_help()
        return 2
    if args.benchmark == "all":
        return _run_all(args, parsers, modules)
    args.command_line = "python -m bench " + shlex.join(argv)
    return _run_one(args.benchmark, modules[args.benchmark], args)


if __name__ == "__main__":
    sys.exit(main())
