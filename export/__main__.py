"""python -m export {onnx,check,trt,ensure-engine}: ONNX export with parity checks and TensorRT engines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fdrl_core.cli import EXIT_FAILURE, add_debug_flag, debug_requested, first_line, run_main

DESCRIPTION = """\
Compile FDRL for the edge run-time.

  onnx           export MiniLM + the FDRL head (everything after the Whisper encoder) to one ONNX graph
  check          onnx.checker, a TensorRT 10.3 op lint, and onnxruntime-vs-PyTorch parity
  trt            build a TensorRT engine (+ sidecar) from the ONNX graph (needs TensorRT and a GPU)
  ensure-engine  container start: print a cached engine that fits this device, or build one (exit 3: none)

Typical flow: python -m export onnx && python -m export check --onnx <model>/onnx
              python -m export trt --onnx <model>/onnx --out <model>/onnx/fdrl_fp16.engine --fp16   (on the device)
"""


def _default_model() -> Path:
    from fdrl_core.assets import default_model_path

    return default_model_path()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{onnx,check,trt,ensure-engine}")

    o = sub.add_parser("onnx", help="export a checkpoint to ONNX",
                       description="Export MiniLM + the FDRL head to DIR/fdrl.onnx (+ fdrl.onnx.data, tokenizer.json, "
                                   "fdrl.json). Dynamic batch, speech length and text length.")
    o.add_argument("--model", type=Path, default=None,
                   help="checkpoint folder (default: $FDRL_MODEL, else the bundled demo model)")
    o.add_argument("--out", type=Path, default=None, help="output folder (default: <model>/onnx)")
    o.add_argument("--opset", type=int, default=18, help="ONNX opset, 17..20 for TensorRT 10.3 (default 18)")
    o.add_argument("--text-model", default=None, help="text encoder folder (default: the packaged all-MiniLM-L6-v2)")
    o.add_argument("--verbose", action="store_true", help="show the exporter's own log")

    c = sub.add_parser("check", help="checker + TensorRT op lint + parity vs PyTorch",
                       description="Fails (exit 1) when max |dprob| > --atol on any case, when argmax differs on a "
                                   "real utterance, or when the graph uses ops TensorRT 10.3 cannot parse.")
    c.add_argument("--onnx", type=Path, default=None, help="export folder (default: <default model>/onnx)")
    c.add_argument("--model", type=Path, default=None,
                   help="checkpoint the graph came from (default: the one recorded in fdrl.json)")
    c.add_argument("--atol", type=float, default=1e-4, help="tolerance on probabilities (default 1e-4)")
    c.add_argument("--skip-real", action="store_true", help="skip the espeak-ng utterances (random inputs only)")
    c.add_argument("--whisper-model", default=None, help="Whisper CTranslate2 folder for the real utterances")

    t = sub.add_parser("trt", help="build a TensorRT engine",
                       description="Build a TensorRT 10.x engine from the ONNX graph on THIS device (engines do not "
                                   "move between GPUs or TensorRT versions) and write ENGINE + ENGINE.json.")
    t.add_argument("--onnx", type=Path, required=True, help="export folder")
    t.add_argument("--out", type=Path, default=None, help="engine file (default: <onnx>/fdrl_<precision>.engine)")
    t.add_argument("--fp16", action="store_true", help="FP16 (normalization layers stay FP32)")
    t.add_argument("--int8", action="store_true", help="INT8 with entropy calibration on real features")
    t.add_argument("--calib", default=None,
                   help="calibration data: a folder of .npy frame arrays or .wav files (text from sibling .txt), "
                        "or a corpus (manifest / IEMOCAP folder)")
    t.add_argument("--calib-items", type=int, default=256, help="utterances used for calibration (default 256)")
    t.add_argument("--calib-cache", default=None, help="TensorRT calibration table to reuse/write")
    t.add_argument("--workspace-mb", type=int, default=512, help="builder workspace limit in MB (default 512)")
    t.add_argument("--timing-cache", default=None, help="timing cache file to reuse/update (speeds up rebuilds)")
    t.add_argument("--max-batch", type=int, default=8, help="largest batch the engine accepts (default 8)")
    t.add_argument("--opt-speech-frames", type=int, default=150, help="tuning point: speech frames (default 150 = 3 s)")
    t.add_argument("--opt-text-tokens", type=int, default=16, help="tuning point: text tokens (default 16)")
    t.add_argument("--optimization-level", type=int, default=None, help="builder optimization level 0..5")

    e = sub.add_parser("ensure-engine", help="reuse or build the engine for this device (container start)",
                       description="Prints the engine path and exits 0, or prints why not on stderr and exits 3 "
                                   "(the caller then falls back to onnxruntime).")
    e.add_argument("--onnx", type=Path, required=True, help="export folder")
    e.add_argument("--cache", type=Path, default=None, help="engine cache folder (default: $FDRL_ENGINE_CACHE, "
                                                            "else ~/.cache/fdrl/engines)")
    e.add_argument("--fp16", action="store_true", help="want an FP16 engine")
    e.add_argument("--workspace-mb", type=int, default=512, help="builder workspace limit in MB (default 512)")
    for sp in (o, c, t, e):
        add_debug_flag(sp)
    return p


def _cmd_onnx(args) -> int:
    from export.onnx_export import ExportOptions, export_onnx

    model = args.model or _default_model()
    out = args.out or Path(model) / "onnx"
    export_onnx(model, out, ExportOptions(opset=args.opset, text_model=args.text_model, verbose=args.verbose))
    print(out)
    return 0


def _cmd_check(args) -> int:
    from export.check import main_check

    args.onnx = args.onnx or _default_model() / "onnx"
    return main_check(args)


def _cmd_trt(args) -> int:
    from export.trt_build import BuildOptions, build_engine

    opts = BuildOptions(fp16=args.fp16, int8=args.int8, calib=args.calib, calib_items=args.calib_items,
                        calib_cache=args.calib_cache, workspace_mb=args.workspace_mb, timing_cache=args.timing_cache,
                        max_batch=args.max_batch, opt_speech_frames=args.opt_speech_frames,
                        opt_text_tokens=args.opt_text_tokens, optimization_level=args.optimization_level)
    out = args.out or args.onnx / f"fdrl_{opts.precision}.engine"
    build_engine(args.onnx, out, opts)
    print(out)
    return 0


def _cmd_ensure(args) -> int:
    from export.ensure_engine import ensure_engine

    code, msg = ensure_engine(args.onnx, args.cache, fp16=args.fp16, workspace_mb=args.workspace_mb)
    print(msg, file=sys.stdout if code == 0 else sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    handlers = {"onnx": _cmd_onnx, "check": _cmd_check, "trt": _cmd_trt, "ensure-engine": _cmd_ensure}

    def body() -> int:
        from export.trt_build import TensorRTMissing

        try:
            return handlers[args.command](args)
        except TensorRTMissing as e:  # its message is the whole story (what to install where)
            print(first_line(e), file=sys.stderr)
            return EXIT_FAILURE

    return run_main(f"export {args.command}", body, debug=debug_requested(args), input_errors=_input_errors(),
                    run_errors=_run_errors())


def _input_errors() -> tuple[type[BaseException], ...]:
    """What the user gave us: model/ONNX folders, calibration data, arguments (exit 2). Export, check and
    build failures are run-time failures (exit 1), as is a missing TensorRT."""
    from export.calib import CalibrationError
    from fdrl_core.assets import AssetError
    from fdrl_core.checkpoint import CheckpointError

    return (AssetError, CheckpointError, CalibrationError)


def _run_errors() -> tuple[type[BaseException], ...]:
    from export.check import CheckError
    from export.onnx_export import ExportError
    from export.trt_build import BuildError

    return (ExportError, CheckError, BuildError)



if __name__ == "__main__":
    sys.exit(main())
