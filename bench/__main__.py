"""python -m bench <benchmark> [options]: each benchmark is a module with add_arguments(parser) and run(args)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help); a new benchmark is one more entry here
BENCHMARKS = {
    "backends": ("bench.backends", "emotion backends side by side: torch eager vs onnxruntime (vs TensorRT)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmarks of the FDRL run-time. "
                                     "Results go to bench/results/ as JSON + markdown, with the machine described.")
    sub = parser.add_subparsers(dest="benchmark", metavar="{" + ",".join(BENCHMARKS) + "}")
    modules = {}
    for name, (module, help_text) in BENCHMARKS.items():
        modules[name] = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=getattr(modules[name], "__doc__", help_text),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    if args.benchmark is None:
        parser.print_help()
        return 2
    try:
        return int(modules[args.benchmark].run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line, not a traceback; FDRL_DEBUG=1 shows it
        if os.environ.get("FDRL_DEBUG"):
            raise
        print(f"bench {args.benchmark}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
