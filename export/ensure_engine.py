"""First start of the Jetson container: reuse a cached engine built for this device, else build one.

Exit codes (the entrypoint script relies on them): 0 = the engine path is printed on stdout;
3 = no engine (TensorRT missing, no GPU, build failed) with the reason on stderr: the caller then runs
the onnxruntime backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fdrl_core.engine_cache import Decision, DeviceError, decide, default_cache_dir, detect_device

EXIT_OK, EXIT_NO_ENGINE = 0, 3


def ensure_engine(onnx_dir: str | Path, cache_dir: str | Path | None = None, *, fp16: bool = False,
                  workspace_mb: int = 512, device=None, build=None, log=None) -> tuple[int, str]:
    """(exit code, engine path or reason). `device` and `build` are injectable for tests."""
    from export.onnx_export import ExportError, load_sidecar, onnx_sha256
    from export.trt_build import BuildError, BuildOptions, build_engine
    from fdrl_core.packed_onnx import PackError, ready

    say = log or (lambda msg: print(msg, file=sys.stderr))
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        device = device or detect_device()  # first: the common reason for "no engine" is cheap to find
        load_sidecar(onnx_dir)
        onnx_dir = ready(onnx_dir, log=say)  # the bundled demo export: its unpacked copy
        sha = onnx_sha256(onnx_dir)
    except (ExportError, DeviceError, PackError, OSError) as e:
        return EXIT_NO_ENGINE, str(e)
    opts = BuildOptions(fp16=fp16, workspace_mb=workspace_mb)
    decision: Decision = decide(cache, sha, device, opts.precision)
    for line in decision.rejected:
        say(f"cached engine not usable: {line}")
    if decision.action == "use":
        return EXIT_OK, str(decision.engine)
    say(f"no cached {opts.precision} engine for {device.gpu_name} / TensorRT {device.tensorrt_version}: "
        f"building {decision.engine}")
    try:
        (build or build_engine)(onnx_dir, decision.engine, opts, device=device, log=say)
    except (BuildError, ExportError, OSError, RuntimeError) as e:
        return EXIT_NO_ENGINE, f"engine build failed: {e}"
    return EXIT_OK, str(decision.engine)
