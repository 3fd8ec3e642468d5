"""Build a TensorRT engine from the exported ONNX graph with the TensorRT 10.x Python API.

Written against TensorRT 10.3 (JetPack 6.1/6.2), the version the Jetson side is pinned to: explicit
batch only, build_serialized_network, memory-pool limits, one optimization profile for batch and both
sequence lengths, a timing cache, FP16 with normalization layers pinned to FP32 (LayerNorm after
attention overflows in FP16), and INT8 only by explicit quantization: a graph with Q/DQ nodes from
`python -m export quantize` (the implicit-calibrator API is deprecated since TensorRT 10.1).
TensorRT 11 drops the weakly-typed FP16/INT8 flags; that is reported, not guessed around.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fdrl_core.engine_cache import (
    TENSORRT_HINT,
    DeviceError,
    DeviceInfo,
    default_cache_dir,
    detect_device,
    engine_name,
)
from fdrl_core.export_format import ONNX_FILE, EngineSidecar, OnnxSidecar

SHAPE_INPUTS = {"speech": "speech", "speech_mask": "speech", "input_ids": "text", "attention_mask": "text"}


class BuildError(RuntimeError):
    """An engine that could not be built; one line for the CLI (TensorRT's own log has the details)."""


class TensorRTMissing(BuildError):
    pass


@dataclass
class BuildOptions:
    fp16: bool = False
    int8: bool = False  # the graph carries Q/DQ nodes (python -m export quantize): explicit INT8, no calibrator
    workspace_mb: int = 512  # modest: Whisper, Python and the engine share 8 GB on an Orin Nano
    timing_cache: str | None = None
    max_batch: int = 8
    opt_batch: int = 1
    opt_speech_frames: int = 150  # a 3 s utterance
    opt_text_tokens: int = 16
    max_speech_frames: int | None = None  # default: the sidecar's (1500 = one Whisper window)
    max_text_tokens: int | None = None  # default: the sidecar's (the tokenizer truncates to it)
    optimization_level: int | None = None  # builder_optimization_level 0..5 (TensorRT default 3)

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


def profile_shapes(sidecar: OnnxSidecar, opts: BuildOptions) -> dict[str, list[list[int]]]:
    """{input: [min, opt, max]}; inputs sharing a dim get the same range (TensorRT requires it)."""
    max_s = opts.max_speech_frames or sidecar.max_speech_frames
    max_t = opts.max_text_tokens or sidecar.max_text_tokens
    lengths = {"speech": (1, min(opts.opt_speech_frames, max_s), max_s),
               "text": (1, min(opts.opt_text_tokens, max_t), max_t)}
    batch = (1, min(opts.opt_batch, opts.max_batch), opts.max_batch)
    if min(batch[2], max_s, max_t) < 1:
        raise BuildError("profile maxima must be >= 1")
    shapes = {}
    for name, kind in SHAPE_INPUTS.items():
        tail = [sidecar.speech_dim] if name == "speech" else []
        shapes[name] = [[batch[i], lengths[kind][i], *tail] for i in range(3)]
    return shapes


def default_engine_path(onnx_dir: str | Path, precision: str, device: DeviceInfo | None = None) -> Path:
    """Where `python -m export trt` writes without --out: the engine cache, under the name ensure-engine
    and the run-time look for (graph hash, precision, GPU, TensorRT version)."""
    from export.onnx_export import onnx_sha256

    import_tensorrt()
    try:
        device = device or detect_device()
    except DeviceError as e:
        raise BuildError(str(e)) from None
    return default_cache_dir() / engine_name(onnx_sha256(onnx_dir), precision, device)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTMissing(f"TensorRT is not installed ({e}): {TENSORRT_HINT}") from None
    return trt


def _pin_normalization_fp32(network, trt) -> int:
    """Keep every normalization layer (LayerNorm from opset >= 17) and its output in FP32."""
    n = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            n += 1
    return n


def build_engine(onnx_dir: str | Path, out: str | Path, opts: BuildOptions | None = None,
                 device: DeviceInfo | None = None, log=None) -> EngineSidecar:
    """Parse onnx_dir/fdrl.onnx, build, write `out` + `out.json`; returns the sidecar."""
    from export.onnx_export import load_sidecar, onnx_sha256
    from export.quantize import has_qdq
    from fdrl_core.packed_onnx import ready

    opts = opts or BuildOptions()
    say = log or (lambda msg: print(msg, file=sys.stderr))
    trt = import_tensorrt()
    onnx_dir = Path(onnx_dir).expanduser()
    sidecar = load_sidecar(onnx_dir)
    onnx_dir = ready(onnx_dir, log=say)  # a packed (bundled demo) export: its unpacked copy
    actual = onnx_sha256(onnx_dir)
    if sidecar.onnx_sha256 and actual != sidecar.onnx_sha256:
        raise BuildError(f"{onnx_dir / ONNX_FILE} changed since export (sha256 differs from {onnx_dir}/fdrl.json); "
                         "export it again")
    try:
        device = device or detect_device()
    except DeviceError as e:
        raise BuildError(str(e)) from None
    if (opts.fp16 or opts.int8) and not hasattr(trt.BuilderFlag, "FP16"):
        raise BuildError(f"TensorRT {trt.__version__} builds strongly typed networks only (no FP16/INT8 flags); "
                         "build with TensorRT 10.x, or fp32 here")
    shapes = profile_shapes(sidecar, opts)
    qdq = has_qdq(onnx_dir / ONNX_FILE)

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    say(f"parsing {onnx_dir / ONNX_FILE} with TensorRT {trt.__version__} on {device.gpu_name}")
    if not parser.parse_from_file(str(onnx_dir / ONNX_FILE)):  # resolves fdrl.onnx.data next to it
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError("TensorRT could not parse the ONNX graph: " + " | ".join(errors[:5]))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    if opts.optimization_level is not None:
        config.builder_optimization_level = int(opts.optimization_level)
    profile = builder.create_optimization_profile()
    for name, (mn, op, mx) in shapes.items():
        profile.set_shape(name, mn, op, mx)
    config.add_optimization_profile(profile)

    if qdq and not opts.int8:
        opts.int8 = True
        say("the graph carries Q/DQ nodes: building INT8 from its scales (explicit quantization)")
    if opts.int8 and not qdq:
        raise BuildError(f"--int8 needs an explicitly quantized graph: python -m export quantize --onnx {onnx_dir} "
                         "--calib <utterances> --out <folder>, then build from that folder (TensorRT's implicit "
                         "INT8 calibrator is deprecated since 10.1 and gone in 11)")
    if opts.fp16 or opts.int8:
        config.set_flag(trt.BuilderFlag.FP16)  # with INT8: FP16 for the layers Q/DQ does not cover
        if opts.int8:
            config.set_flag(trt.BuilderFlag.INT8)  # TensorRT 10 (weakly typed) needs it to honour Q/DQ layers
        pinned = _pin_normalization_fp32(network, trt)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        say(f"{opts.precision}: {pinned} normalization layers kept in FP32")

    cache_file = Path(opts.timing_cache).expanduser() if opts.timing_cache else None
    blob = cache_file.read_bytes() if cache_file and cache_file.is_file() else b""
    timing_cache = config.create_timing_cache(blob)
    config.set_timing_cache(timing_cache, False)

    say(f"building ({opts.precision}, workspace {opts.workspace_mb} MB, profile "
        + ", ".join(f"{n} {s[0]}..{s[2]}" for n, s in shapes.items() if n in ("speech", "input_ids"))
        + "); this takes minutes on a Jetson")
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildError("TensorRT could not build the engine (see its log above)")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(memoryview(plan))
    # the sidecar is what makes an engine trusted: drop the old one first, write the new one last, so a
    # crash in between leaves an engine that is rebuilt, never one described by another engine's sidecar
    EngineSidecar.path_for(out).unlink(missing_ok=True)
    os.replace(tmp, out)
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(memoryview(config.get_timing_cache().serialize()))

    engine_sidecar = EngineSidecar(
        tensorrt_version=device.tensorrt_version, gpu_name=device.gpu_name,
        compute_capability=device.compute_capability, precision=opts.precision, onnx_sha256=actual,
        profile=shapes, labels=list(sidecar.labels), built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    engine_sidecar.save(out)
    write_onnx_link(out, onnx_dir)
    say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s")
    return engine_sidecar


def write_onnx_link(engine: str | Path, onnx_dir: str | Path) -> None:
    """Record in the engine's sidecar which export folder it came from (tokenizer, labels, fallback)."""
    import json

    side = EngineSidecar.path_for(engine)
    data = json.loads(side.read_text())
    data["onnx_dir"] = str(Path(onnx_dir).expanduser().resolve())
    side.write_text(json.dumps(data, indent=2) + "\n")
