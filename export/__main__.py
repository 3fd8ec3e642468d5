"""python -m export {onnx,check,trt,ensure-engine}: ONNX export with parity checks and TensorRT engines."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fdrl_core.cli import (
    EXIT_FAILURE,
    ArgumentParser,
    RunError,
    add_debug_flag,
    check_output_dir,
    debug_requested,
    first_line,
    run_main,
)

DEFAULT_ONNX_OUT = "build/onnx"

DESCRIPTION = """\
Compile FDRL for the edge run-time.

  onnx           export MiniLM + the FDRL head (everything after the Whisper encoder) to one ONNX graph
  demo           re-export the bundled demo model into fdrl_core/demo_model/onnx (source checkout) + parity
  check          onnx.checker, a TensorRT 10.3 op lint, and onnxruntime-vs-PyTorch parity
  quantize       INT8 by explicit quantization: Q/DQ nodes calibrated on real utterances (onnxruntime, CPU)
  trt            build a TensorRT engine (+ sidecar) from the ONNX graph (needs TensorRT and a GPU)
  ensure-engine  container start: print a cached engine that fits this device, or build one (exit 3: none)

Typical flow: python -m export onnx --model runs/x/model --out build/onnx && python -m export check --onnx build/onnx
              python -m export trt --onnx build/onnx --fp16      (on the device; engine goes to the engine cache)
Outputs go to ./build, the engine cache (~/.cache/fdrl/engines) or the path you give, never into the installed
package (except `demo`, which updates the source tree on purpose).
"""


def _default_model() -> Path:
    from fdrl_core.assets import default_model_path

    return default_model_path()


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m export", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{onnx,demo,check,quantize,trt,ensure-engine}")

    o = sub.add_parser("onnx", help="export a checkpoint to ONNX",
                       description="Export MiniLM + the FDRL head to DIR/fdrl.onnx (+ fdrl.onnx.data, tokenizer.json, "
                                   "fdrl.json). Dynamic batch, speech length and text length.")
    o.add_argument("--model", type=Path, default=None,
                   help="checkpoint folder (default: $FDRL_MODEL, else the bundled demo model)")
    o.add_argument("--out", type=Path, default=None, help=f"output folder (default: ./{DEFAULT_ONNX_OUT})")
    o.add_argument("--opset", type=int, default=18, help="ONNX opset, 17..20 for TensorRT 10.3 (default 18)")
    o.add_argument("--text-model", default=None, help="text encoder folder (default: the packaged all-MiniLM-L6-v2)")
    o.add_argument("--verbose", action="store_true", help="show the exporter's own log")

    d = sub.add_parser("demo", help="re-export the bundled demo model (after retraining it)",
                       description="Export fdrl_core/demo_model to fdrl_core/demo_model/onnx (the graph the default "
                                   "run-time loads, torch-free), then check parity against PyTorch. Run it from a "
                                   "source checkout after scripts/train_demo_model.sh and commit the result.")
    d.add_argument("--skip-check", action="store_true", help="export only")
    d.add_argument("--skip-real", action="store_true", help="parity on random inputs only (no espeak-ng)")
    d.add_argument("--verbose", action="store_true", help="show the exporter's own log")

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
    t.add_argument("--out", type=Path, default=None,
                   help="engine file (default: the engine cache, $FDRL_ENGINE_CACHE or ~/.cache/fdrl/engines, under "
                        "a name that says which graph, precision, GPU and TensorRT it is for; the run-time finds it)")
    t.add_argument("--fp16", action="store_true", help="FP16 (normalization layers stay FP32)")
    t.add_argument("--int8", action="store_true",
                   help="INT8 from the graph's Q/DQ nodes (explicit quantization: run `quantize` first; a quantized "
                        "graph is built as INT8 anyway)")
    t.add_argument("--workspace-mb", type=int, default=512, help="builder workspace limit in MB (default 512)")
    t.add_argument("--timing-cache", default=None, help="timing cache file to reuse/update (speeds up rebuilds)")
    t.add_argument("--max-batch", type=int, default=8, help="largest batch the engine accepts (default 8)")
    t.add_argument("--opt-speech-frames", type=int, default=150, help="tuning point: speech frames (default 150 = 3 s)")
    t.add_argument("--opt-text-tokens", type=int, default=16, help="tuning point: text tokens (default 16)")
    t.add_argument("--optimization-level", type=int, default=None, help="builder optimization level 0..5")

    q = sub.add_parser("quantize", help="INT8 by explicit quantization (Q/DQ nodes) for TensorRT and onnxruntime",
                       description="Calibrate on real utterances and write a copy of the export with Q/DQ nodes "
                                   "(symmetric INT8, MatMul/Gemm, weights per channel): TensorRT builds it as INT8 "
                                   "without its deprecated calibrator (python -m export trt --onnx OUT).")
    q.add_argument("--onnx", type=Path, default=None, help="float export folder (default: <default model>/onnx)")
    q.add_argument("--calib", required=True,
                   help="calibration utterances: a folder of .wav (text from sibling .txt) or .npy frame arrays, or "
                        "a .csv/.jsonl manifest with path and text (or a folder holding manifest.jsonl)")
    q.add_argument("--out", type=Path, default=Path("build/onnx-int8"),
                   help="output folder (default ./build/onnx-int8)")
    q.add_argument("--items", type=int, default=128, help="utterances used for calibration (default 128)")
    q.add_argument("--method", default="entropy", choices=("entropy", "minmax", "percentile"),
                   help="calibration method (default entropy)")
    q.add_argument("--check", action="store_true",
                   help="then compare the quantized graph with the float one on the calibration utterances")

    e = sub.add_parser("ensure-engine", help="reuse or build the engine for this device (container start)",
                       description="Prints the engine path and exits 0, or prints why not on stderr and exits 3 "
                                   "(the caller then falls back to onnxruntime).")
    e.add_argument("--onnx", type=Path, required=True, help="export folder")
    e.add_argument("--cache", type=Path, default=None, help="engine cache folder (default: $FDRL_ENGINE_CACHE, "
                                                            "else ~/.cache/fdrl/engines)")
    e.add_argument("--fp16", action="store_true", help="want an FP16 engine")
    e.add_argument("--workspace-mb", type=int, default=512, help="builder workspace limit in MB (default 512)")
    for sp in (o, d, c, t, q, e):
        add_debug_flag(sp)
    return p


def _cmd_onnx(args) -> int:
    from export.onnx_export import ExportOptions, export_onnx
    from fdrl_core.checkpoint import read_config

    model = args.model or _default_model()
    read_config(model)  # a bad model folder is said first
    out = check_output_dir(args.out or Path(DEFAULT_ONNX_OUT))  # not after the ~30 s export
    try:
        export_onnx(model, out, ExportOptions(opset=args.opset, text_model=args.text_model, verbose=args.verbose))
    except OSError as e:
        if e.filename is not None:
            raise
        raise RunError(f"cannot write the export to {out}: {e.strerror or e}") from None  # a full disk
    print(out)
    return 0


def _cmd_demo(args) -> int:
    from export.check import check_export
    from export.onnx_export import PACKED_ATOL, ExportError, drop_packed_weights, export_packed, onnx_sha256
    from fdrl_core.assets import demo_model_dir
    from fdrl_core.packed_onnx import ready

    model = demo_model_dir()
    if any(part in ("site-packages", "dist-packages") for part in model.parts):
        raise ExportError(f"{model} is an installed copy; run `python -m export demo` from a source checkout "
                          "(pip install -e .) so the result can be committed")
    out = model / "onnx"
    sidecar = export_packed(model, out, verbose=args.verbose)
    if not args.skip_check:
        rep = check_export(out, model, atol=PACKED_ATOL, real=not args.skip_real)
        if not rep.ok:
            for f in rep.failures:
                print(f"export demo: FAILED: {f}", file=sys.stderr)
            return 1
    drop_packed_weights(out)
    unpacked = ready(out, log=lambda m: print(m, file=sys.stderr))
    if onnx_sha256(unpacked) != sidecar.onnx_sha256:
        raise ExportError(f"{out}: the pack does not unpack to the checked graph")
    total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"{out} ({total / 1e6:.1f} MB in git; unpacks to {unpacked})")
    return 0


def _cmd_check(args) -> int:
    from export.check import main_check

    args.onnx = args.onnx or _default_model() / "onnx"
    return main_check(args)


def _cmd_trt(args) -> int:
    from export.quantize import has_qdq
    from export.trt_build import BuildOptions, build_engine, default_engine_path
    from fdrl_core.packed_onnx import ready

    int8 = args.int8 or has_qdq(ready(args.onnx) / "fdrl.onnx")
    opts = BuildOptions(fp16=args.fp16, int8=int8, workspace_mb=args.workspace_mb, timing_cache=args.timing_cache,
                        max_batch=args.max_batch, opt_speech_frames=args.opt_speech_frames,
                        opt_text_tokens=args.opt_text_tokens, optimization_level=args.optimization_level)
    out = args.out or default_engine_path(args.onnx, opts.precision)
    build_engine(args.onnx, out, opts)
    print(out)
    return 0


def _cmd_quantize(args) -> int:
    from export.quantize import QuantizeOptions, compare_quantized, quantize_export

    src = args.onnx or _default_model() / "onnx"
    opts = QuantizeOptions(calib=args.calib, items=args.items, method=args.method)
    quantize_export(src, args.out, opts)
    if args.check:
        print(compare_quantized(src, args.out, opts).line())
    print(args.out)
    return 0


def _cmd_ensure(args) -> int:
    from export.ensure_engine import ensure_engine

    code, msg = ensure_engine(args.onnx, args.cache, fp16=args.fp16, workspace_mb=args.workspace_mb)
    print(msg if code == 0 else f"export ensure-engine: {msg}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no weight-loading bars between our lines
    if args.command is None:
        _parser().print_help()
        return 2
    handlers = {"onnx": _cmd_onnx, "demo": _cmd_demo, "check": _cmd_check, "trt": _cmd_trt,
                "quantize": _cmd_quantize, "ensure-engine": _cmd_ensure}

    def body() -> int:
        from export.trt_build import TensorRTMissing

        try:
            return handlers[args.command](args)
        except TensorRTMissing as e:  # its message is the whole story (what to install where)
            print(f"export {args.command}: {first_line(e)}", file=sys.stderr)
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
    from export.quantize import QuantizeError
    from export.trt_build import BuildError
    from fdrl_core.packed_onnx import PackError

    return (ExportError, CheckError, BuildError, QuantizeError, PackError)



if __name__ == "__main__":
    sys.exit(main())
