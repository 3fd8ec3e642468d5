"""python -m bench <benchmark> [options]: each benchmark is a module with add_arguments(parser) and run(args)."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

# name -> (module, one-line help); a new benchmark is one more entry here
BENCHMARKS = {
    "backends": ("bench.backends", "emotion backends side by side: torch eager vs onnxruntime (vs TensorRT)"),
    "pipeline": ("bench.pipeline", "end of speech -> final emotion: our run-time vs the naive pipeline, one file"),
    "scaling": ("bench.scaling", "latency and CPU vs utterance length (1-15 s) and concurrent streams (1, 2, 4)"),
    "windows": ("bench.windows", "WER and encoder cost of utterance-sized encoder windows vs the 30 s window"),
}
# options `all` passes on to every benchmark that has them
SHARED = ("model", "out", "backend", "audio", "device", "repeat")

ALL_HELP = "every benchmark in turn (backends, pipeline, scaling); one failing does not stop the others"


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


def _error_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _run_one(name: str, module, args) -> int:
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line, not a traceback; FDRL_DEBUG=1 shows it
        if os.environ.get("FDRL_DEBUG"):
            raise
        print(f"bench {name}: {_error_line(e)}", file=sys.stderr)
        return 1


def _run_all(args, parsers: dict, modules: dict) -> int:
    codes = {}
    for name, p in parsers.items():
        argv = []
        for opt in SHARED:
            value = getattr(args, opt)
            if value is not None and any(f"--{opt}" in a.option_strings for a in p._actions):
                argv += [f"--{opt}", str(value)]
        print(f"== python -m bench {name} {shlex.join(argv)}", file=sys.stderr, flush=True)
        sub_args = p.parse_args(argv)
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
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmarks of the FDRL run-time. "
                                     "Results go to bench/results/ as JSON + markdown, with the machine described.")
    sub = parser.add_subparsers(dest="benchmark", metavar="{" + ",".join([*BENCHMARKS, "all"]) + "}")
    modules, parsers = {}, {}
    for name, (module, help_text) in BENCHMARKS.items():
        modules[name] = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=getattr(modules[name], "__doc__", help_text),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        modules[name].add_arguments(p)
        parsers[name] = argparse.ArgumentParser(prog=f"python -m bench {name}")
        modules[name].add_arguments(parsers[name])
    _add_all(sub)
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
