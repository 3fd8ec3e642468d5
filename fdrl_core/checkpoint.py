"""Checkpoints as a folder: model.safetensors + config.json + labels.json (+ meta.json, MODEL_CARD.md).

No pickle anywhere, so a checkpoint from an untrusted source cannot run code, and the folder can be
read by tools in other languages.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fdrl_core.cli import InputError
from fdrl_core.config import FDRLConfig
from fdrl_core.labels import LabelSet

WEIGHTS, CONFIG, LABELS, META = "model.safetensors", "config.json", "labels.json", "meta.json"


class CheckpointError(InputError):
    """A checkpoint folder that is missing, incomplete, or does not fit the code."""


def save_checkpoint(model, folder: str | Path, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "fdrl/1"})
    model.cfg.save(folder / CONFIG)
    model.cfg.labels.save(folder / LABELS)
    if meta is not None:
        (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def read_config(folder: str | Path) -> FDRLConfig:
    """The config and label set of a checkpoint, without torch (used by the ONNX/TensorRT run-time)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} is not an FDRL checkpoint: {name} is missing")
    try:
        cfg = FDRLConfig.load(folder / CONFIG)  # errors start with the file's path
    except (ValueError, TypeError) as e:
        raise CheckpointError(str(e)) from None  # "<folder>/config.json: field ..."
    except OSError as e:
        raise CheckpointError(f"{folder / CONFIG}: cannot read ({e.strerror})") from None
    if (folder / LABELS).is_file():  # labels.json is authoritative for the label set
        try:
            cfg.labels = LabelSet.load(folder / LABELS)
        except ValueError as e:
            raise CheckpointError(str(e)) from None  # "<folder>/labels.json line ..."
        except OSError as e:
            raise CheckpointError(f"{folder / LABELS}: cannot read ({e.strerror})") from None
    return cfg


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / META
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return meta


def load_checkpoint(folder: str | Path, map_location: str = "cpu"):
    """Build the model from config.json and load the weights strictly; returns it in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from fdrl_core.model import FDRL

    folder = Path(folder)
    cfg = read_config(folder)
    try:
        state = load_file(str(folder / WEIGHTS), device=map_location)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder / WEIGHTS}: not a readable safetensors file ({e})") from None
    model = FDRL(cfg)
    state.setdefault("temperature", model.temperature.clone())  # checkpoints from before calibration: T = 1
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{folder}: weights do not fit its config ({first})") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{folder}: weights do not fit its config (missing {len(result.missing_keys)} tensors, "
            f"unexpected {len(result.unexpected_keys)}; e.g. {(result.missing_keys + result.unexpected_keys)[:3]})")
    return model.eval()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checkpoint_hash(folder: str | Path) -> str:
    """Identity of a checkpoint: hash of its weights and config (used by export sidecars and caches)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for name in (WEIGHTS, CONFIG):
        h.update(file_sha256(folder / name).encode())
    return h.hexdigest()
