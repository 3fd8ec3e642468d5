"""Which TensorRT engine fits this device, without importing torch (the run-time uses this too).

Engines are not portable across GPUs or TensorRT versions: a cached engine is used only when its
sidecar says it was built here, from this ONNX graph, at the wanted precision
(fdrl_core.export_format.engine_mismatch). The decision is a pure function of what is on disk and of a
DeviceInfo, so it is testable on a machine without TensorRT or a GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from fdrl_core.export_format import EngineSidecar, engine_mismatch

ENGINE_SUFFIX = ".engine"
CACHE_ENV = "FDRL_ENGINE_CACHE"
TENSORRT_HINT = ("on Jetson (JetPack 6) install JetPack's python3-libnvinfer and use the system Python "
                 "(a venv needs --system-site-packages); on x86 `pip install 'tensorrt-cu12>=10.3,<11'` "
                 "(NVIDIA's wheels)")


class DeviceError(RuntimeError):
    """No usable TensorRT or CUDA device here; the message says which and how to get it."""


@dataclass(frozen=True)
class DeviceInfo:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" on Orin


@dataclass
class Decision:
    action: str  # "use" a cached engine | "build" one at `engine`
    engine: Path
    rejected: list[str] = field(default_factory=list)  # "<file>: <why not>" for every cached engine passed over


def default_cache_dir() -> Path:
    """$FDRL_ENGINE_CACHE, else $XDG_CACHE_HOME/fdrl/engines, else ~/.cache/fdrl/engines."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fdrl" / "engines"


def engine_name(onnx_sha256: str, precision: str, device: DeviceInfo) -> str:
    """A file name that says what the engine is for, so several devices can share one cache folder."""
    gpu = re.sub(r"[^a-z0-9]+", "-", device.gpu_name.lower()).strip("-") or "gpu"
    cc = device.compute_capability.replace(".", "")
    return f"fdrl-{onnx_sha256[:12]}-{precision}-{gpu}-sm{cc}-trt{device.tensorrt_version}{ENGINE_SUFFIX}"


def engine_problem(engine: str | Path, device: DeviceInfo, onnx_sha256: str | None,
                   precision: str | None = None) -> str | None:
    """Why this engine file cannot be used here (one line), or None when it fits."""
    engine = Path(engine)
    if not engine.is_file():
        return f"{engine} does not exist"
    side = EngineSidecar.path_for(engine)
    if not side.is_file():
        return f"{engine} has no sidecar {side.name}: it cannot be checked against this device"
    try:
        sidecar = EngineSidecar.load(engine)
    except (OSError, ValueError, TypeError) as e:
        return f"{side} is unreadable ({e})"
    why = engine_mismatch(sidecar, device.tensorrt_version, device.gpu_name, device.compute_capability, onnx_sha256)
    if why is None and precision and sidecar.precision != precision:
        why = f"engine precision is {sidecar.precision}, {precision} was asked for"
    return why


def decide(cache_dir: str | Path, onnx_sha256: str, device: DeviceInfo, precision: str) -> Decision:
    """Use the first cached engine that fits this device, ONNX graph and precision; else build one."""
    cache = Path(cache_dir)
    wanted = cache / engine_name(onnx_sha256, precision, device)
    candidates = sorted(cache.glob(f"*{ENGINE_SUFFIX}")) if cache.is_dir() else []
    if wanted in candidates:  # the canonical name first
        candidates.remove(wanted)
        candidates.insert(0, wanted)
    rejected = []
    for engine in candidates:
        why = engine_problem(engine, device, onnx_sha256, precision)
        if why is None:
            return Decision("use", engine, rejected)
        rejected.append(f"{engine.name}: {why}")
    return Decision("build", wanted, rejected)


# ------------------------------------------------------------------------------ what this machine has


def _gpu_from_cudart(index: int) -> tuple[str, str]:
    from fdrl_core.cuda import cuda_runtime

    cudart = cuda_runtime()
    err, props = cudart.cudaGetDeviceProperties(index)
    if int(err) != 0:
        raise DeviceError(f"no CUDA device {index} (cudaGetDeviceProperties: {err})")
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return str(name).strip(), f"{props.major}.{props.minor}"


def _gpu_from_nvidia_smi(index: int) -> tuple[str, str]:
    if shutil.which("nvidia-smi") is None:
        raise DeviceError("no CUDA device found (cuda-python is not installed and nvidia-smi is absent)")
    out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20)
    if out.returncode != 0 or "," not in out.stdout:
        raise DeviceError(f"no CUDA device found (nvidia-smi: {(out.stderr or out.stdout).strip()[:200]})")
    name, cc = out.stdout.strip().splitlines()[0].rsplit(",", 1)
    return name.strip(), cc.strip()


def gpu_info(index: int = 0) -> tuple[str, str]:
    """(name, compute capability) of CUDA device `index`; DeviceError when there is none."""
    try:
        return _gpu_from_cudart(index)
    except ImportError:
        return _gpu_from_nvidia_smi(index)


def tensorrt_version() -> str:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise DeviceError(f"TensorRT is not installed ({e}): {TENSORRT_HINT}") from None
    return str(trt.__version__)


def detect_device(index: int = 0) -> DeviceInfo:
    """TensorRT version + GPU of this machine; DeviceError (one line) when either is missing."""
    version = tensorrt_version()
    name, cc = gpu_info(index)
    return DeviceInfo(version, name, cc)
