"""The contract between `export/` (which writes ONNX graphs and TensorRT engines) and the run-time
(which loads them): tensor names, sidecar files, and when an engine may not be used.

Engines are not portable across GPUs or TensorRT versions, so every engine carries a sidecar that
says what it was built for, and the run-time refuses (with the reason) one built for something else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# ONNX graph: MiniLM text encoder + FDRL head, everything after the Whisper encoder
INPUTS = ("speech", "speech_mask", "input_ids", "attention_mask")
OUTPUTS = ("probs", "logits")
ONNX_FILE, ONNX_SIDECAR = "fdrl.onnx", "fdrl.json"
ENGINE_SIDECAR_SUFFIX = ".json"  # model.engine -> model.engine.json


def _load(cls, path: Path):
    data = json.loads(Path(path).read_text())
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class OnnxSidecar:
    labels: list[str]
    inputs: dict[str, dict]  # name -> {"dtype": ..., "shape": [...symbolic dims...]}
    outputs: list[str]
    opset: int
    source_checkpoint: str  # path as exported
    checkpoint_sha256: str
    onnx_sha256: str = ""
    text_model: str = ""  # tokenizer.json is copied next to the graph
    max_text_tokens: int = 128
    max_speech_frames: int = 1500
    speech_dim: int = 384
    extra: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> None:
        (Path(folder) / ONNX_SIDECAR).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> OnnxSidecar:
        return _load(cls, Path(folder) / ONNX_SIDECAR)


@dataclass
class EngineSidecar:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" on Orin
    precision: str  # fp32 | fp16 | int8
    onnx_sha256: str
    profile: dict[str, list[list[int]]]  # input -> [min, opt, max] shapes
    labels: list[str] = field(default_factory=list)
    built_at: str = ""
    onnx_dir: str = ""  # where the graph (and its tokenizer.json) it was built from lives

    @staticmethod
    def path_for(engine: str | Path) -> Path:
        return Path(str(engine) + ENGINE_SIDECAR_SUFFIX)

    def save(self, engine: str | Path) -> None:
        self.path_for(engine).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, engine: str | Path) -> EngineSidecar:
        return _load(cls, cls.path_for(engine))


def engine_mismatch(sidecar: EngineSidecar, tensorrt_version: str, gpu_name: str, compute_capability: str,
                    onnx_sha256: str | None = None) -> str | None:
    """Why an engine cannot be used here (one line), or None when it fits this device and software."""
    if sidecar.tensorrt_version != tensorrt_version:
        return f"engine was built with TensorRT {sidecar.tensorrt_version}, this is TensorRT {tensorrt_version}"
    if sidecar.compute_capability != compute_capability or sidecar.gpu_name != gpu_name:
        return (f"engine was built for {sidecar.gpu_name} (compute {sidecar.compute_capability}), "
                f"this GPU is {gpu_name} (compute {compute_capability})")
    if onnx_sha256 and sidecar.onnx_sha256 != onnx_sha256:
        return "engine was built from a different ONNX model than the one shipped"
    return None
