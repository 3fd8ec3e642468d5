"""What a benchmark ran on, and which hardware path (CPU or CUDA/TensorRT) the run-time takes here.

Every result file carries this, so numbers are never read without the machine, its load and the
library versions that produced them. Versions come from package metadata: describing the machine
must not import torch.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

# module -> distribution names whose versions shape the numbers (onnxruntime and onnxruntime-gpu both
# install the module `onnxruntime`: the one whose files sit where the module is imported from wins)
VERSIONED = {
    "numpy": ("numpy", ("numpy",)),
    "torch": ("torch", ("torch",)),
    "transformers": ("transformers", ("transformers",)),
    "ctranslate2": ("ctranslate2", ("ctranslate2",)),
    "faster-whisper": ("faster_whisper", ("faster-whisper",)),
    "onnxruntime": ("onnxruntime", ("onnxruntime-gpu", "onnxruntime")),
    "tensorrt": ("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt_libs")),
    "webrtcvad": ("webrtcvad", ("webrtcvad-wheels", "webrtcvad")),
    "pyzmq": ("zmq", ("pyzmq",)),
}


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    try:
        pairs = set()
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            if line.startswith("physical id"):
                phys = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
            elif not line.strip():
                if core is not None:
                    pairs.add((phys, core))
                phys = core = None
        return len(pairs) or None
    except OSError:
        return None


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, (module, dists) in VERSIONED.items():
        out[key] = _version_of(module, dists)
    return out


def _version_of(module: str, dists: tuple[str, ...]) -> str | None:
    """The version of the distribution that provides `module` as Python would import it (no import)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    where = Path(spec.origin).parent.parent if spec and spec.origin else None
    wanted = {d.lower().replace("-", "_") for d in dists}
    if where is not None:  # the distribution installed next to the module that is imported
        for dist in metadata.distributions(path=[str(where)]):
            if (dist.metadata["Name"] or "").lower().replace("-", "_") in wanted:
                return dist.version
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@dataclass
class HardwarePath:
    """Where the run-time's two halves run on this machine: the ASR (CTranslate2) and the emotion model."""
    gpu: bool
    asr_device: str  # CTranslate2: cpu | cuda
    asr_compute_type: str  # int8 on CPU, float16 on CUDA
    emotion_device: str  # torch / onnxruntime device: cpu | cuda
    gpu_name: str | None = None
    tensorrt: str | None = None  # TensorRT version, when importable
    ort_cuda: bool = False  # onnxruntime has the CUDA execution provider
    torch_cuda: bool = False
    ct2_cuda_devices: int = 0
    why: list[str] = field(default_factory=list)  # what was found / missing

    @property
    def label(self) -> str:
        if not self.gpu:
            return "CPU (" + "; ".join(self.why) + ")" if self.why else "CPU"
        emo = "TensorRT if an engine is built for it" if self.tensorrt else (
            "onnxruntime CUDA" if self.ort_cuda else "torch CUDA" if self.torch_cuda else "CPU")
        return (f"GPU {self.gpu_name or '?'}: ASR CTranslate2 {self.asr_device} {self.asr_compute_type}, "
                f"emotion model on {self.emotion_device} ({emo})")


def probe_gpu() -> dict:
    """CUDA as each library sees it; nothing here fails on a CPU-only machine."""
    found = {"ct2_cuda_devices": 0, "torch_cuda": False, "ort_cuda": False, "tensorrt": None, "gpu_name": None}
    try:
        import ctranslate2

        found["ct2_cuda_devices"] = int(ctranslate2.get_cuda_device_count())
    except Exception:  # no ctranslate2, or a CUDA driver that fails to load: no CUDA for the ASR
        pass
    try:
        import onnxruntime as ort

        found["ort_cuda"] = "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:
        pass
    try:
        import tensorrt as trt

        found["tensorrt"] = str(trt.__version__)
    except Exception:
        pass
    try:
        import torch

        found["torch_cuda"] = bool(torch.cuda.is_available())
        if found["torch_cuda"]:
            found["gpu_name"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    if found["gpu_name"] is None and (found["ct2_cuda_devices"] or found["tensorrt"]):
        try:
            from fdrl_core.engine_cache import gpu_info

            found["gpu_name"] = gpu_info()[0]
        except Exception:
            pass
    return found


def hardware_path(device: str = "auto", probe=probe_gpu) -> HardwarePath:
    """`device`: auto (GPU when CTranslate2 or an emotion runtime sees one), cpu, or cuda (required).
    Raises ValueError for cuda on a machine without one."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: choose auto, cpu or cuda")
    if device == "cpu":
        return HardwarePath(False, "cpu", "int8", "cpu", why=["--device cpu"])
    f = probe()
    emo_gpu = bool(f["tensorrt"] or f["ort_cuda"] or f["torch_cuda"])
    asr_gpu = f["ct2_cuda_devices"] > 0
    why = [f"CTranslate2 sees {f['ct2_cuda_devices']} CUDA devices",
           f"torch CUDA {'available' if f['torch_cuda'] else 'unavailable'}",
           f"onnxruntime CUDA provider {'present' if f['ort_cuda'] else 'absent'}",
           f"TensorRT {f['tensorrt'] or 'not installed'}"]
    if not (asr_gpu or emo_gpu):
        if device == "cuda":
            raise ValueError("--device cuda: no GPU here (" + "; ".join(why) + ")")
        return HardwarePath(False, "cpu", "int8", "cpu", why=["no GPU found: " + ", ".join(why)])
    return HardwarePath(True, "cuda" if asr_gpu else "cpu", "float16" if asr_gpu else "int8",
                        "cuda" if emo_gpu else "cpu", gpu_name=f["gpu_name"], tensorrt=f["tensorrt"],
                        ort_cuda=f["ort_cuda"], torch_cuda=f["torch_cuda"], ct2_cuda_devices=f["ct2_cuda_devices"],
                        why=why)


def describe(path: HardwarePath | None = None) -> dict:
    info = {
        "cpu": _cpu_model(),
        "physical_cores": _physical_cores(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": _ram_gb(),
        "platform": platform.platform(),
        "versions": versions(),
        "load_average_start": load_average(),
        "load_average_end": None,
    }
    if path is not None:
        info["hardware_path"] = {**asdict(path), "label": path.label}
    return info


def markdown_lines(m: dict) -> list[str]:
    v = m["versions"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "ctranslate2", "faster-whisper", "onnxruntime",
                                             "tensorrt") if v.get(k))
    lines = [f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({m['physical_cores'] or '?'} physical cores), "
             f"{m['ram_gb']} GB RAM; {m['platform']}",
             f"Versions: {libs}",
             f"Load average (1/5/15 min) at start {m['load_average_start']}, at end {m['load_average_end']}"]
    if "hardware_path" in m:
        lines.append(f"Hardware path: {m['hardware_path']['label']}")
    return lines
