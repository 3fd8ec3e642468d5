"""Resumable training state: RNG snapshots, atomic writes, the identity a saved state must match, and the
crash hook the resume tests use. Together these make an interrupted run end bit-identical to an
uninterrupted one."""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from fdrl_core.labels import LabelSet
from train.features import FeatureEntry
from train.splits import Splits

# test hook: "N" raises right after global step N (before any save); "N:kill" sends SIGKILL to this process
CRASH_ENV = "FDRL_TRAIN_CRASH_AT_STEP"
STATE = "state.pt"


class SimulatedCrash(BaseException):
    """Raised by the CRASH_ENV test hook; BaseException so that no error handler swallows it."""


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                   cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(s: dict) -> None:
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    kind, keys, pos, has_gauss, cached = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def atomic_torch_save(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def data_identity(splits: Splits, index: dict[str, FeatureEntry], labels: LabelSet) -> str:
    h = hashlib.sha256()
    for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        for u in part:
            e = index[u.id]
            h.update(f"{name}\t{u.id}\t{labels.index(u.label)}\t{e.speech.name}\t{e.text.name}\n".encode())
    return h.hexdigest()


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += diff_keys(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(prefix + k)
    return out
