"""Emotion backends for the run-time: one interface over torch, onnxruntime and TensorRT.

Input is what the recogniser already has: Whisper encoder frames [T, 384] for an utterance (from
SpeechFrontend.frames, the shared encoder pass) and its final transcript. Empty or missing text
means speech-only: the token mask is all zero and FDRL uses its learned "missing text" vectors.

The onnxruntime and TensorRT paths import neither torch nor transformers (tokenisation uses the
`tokenizers` library and the tokenizer.json shipped next to the ONNX graph), so the edge image
does not need PyTorch. `auto` prefers a TensorRT engine built for this GPU, then onnxruntime, then
torch, and says in a warning why it passed over a faster one.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from fdrl_core.cli import debug_requested
from fdrl_core.export_format import ONNX_FILE, EngineSidecar, OnnxSidecar

log = logging.getLogger(__name__)

KINDS = ("auto", "tensorrt", "onnxruntime", "torch")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_SUBDIR = "onnx"  # `python -m export onnx` writes <checkpoint>/onnx by default


class BackendError(RuntimeError):
    """A backend that cannot be opened here; the message is one line that says why."""


@dataclass
class EmotionResult:
    label: str
    probs: dict[str, float]
    confidence: float
    modalities: tuple[str, ...]  # ("speech", "text") or ("speech",): what the prediction used


class EmotionBackend(Protocol):
    name: str  # "torch" | "onnxruntime" | "tensorrt"
    labels: tuple[str, ...]

    def predict(self, frames: np.ndarray, text: str | None) -> EmotionResult: ...

    def predict_batch(self, frames: list[np.ndarray], texts: list[str | None]) -> list[EmotionResult]: ...


# ------------------------------------------------------------------------------------------ shared


def pad_frames(frames: list[np.ndarray], dim: int, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[B, T, dim] float32 zero-padded and a [B, T] int64 mask (1 = real frame); T >= 1."""
    if max_frames:
        frames = [f[:max_frames] for f in frames]
    t = max(1, max(len(f) for f in frames))
    speech = np.zeros((len(frames), t, dim), np.float32)
    mask = np.zeros((len(frames), t), np.int64)
    for i, f in enumerate(frames):
        speech[i, : len(f)] = f
        mask[i, : len(f)] = 1
    return speech, mask


def _check_inputs(frames: list[np.ndarray], texts: list[str | None], dim: int) -> list[np.ndarray]:
    if len(frames) != len(texts):
        raise ValueError(f"predict_batch: {len(frames)} frame arrays but {len(texts)} texts")
    out = []
    for f in frames:
        f = np.asarray(f, dtype=np.float32)
        if f.ndim != 2 or f.shape[1] != dim:
            raise ValueError(f"speech frames must be [T, {dim}] (SpeechFrontend.frames), got {list(f.shape)}")
        out.append(f)
    return out


class _Backend:
    """Batching, padding and result formatting; subclasses compute class probabilities."""

    name = ""
    max_batch = 64

    def __init__(self, labels, modalities, speech_dim: int, speech_norm: str = "none",
                 speaker_decay: float | None = None):
        self.labels = tuple(labels)
        self.model_modalities = tuple(modalities)
        self.speech_dim = speech_dim
        # "speaker": the caller normalises frames with per-stream running statistics before predict
        # (fdrl_core.speaker_norm; stream.emotion does it), the graph itself is the same
        self.speech_norm = speech_norm
        self.speaker_decay = speaker_decay

    def _probs(self, frames: list[np.ndarray], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(probs [B, C], has_text [B] bool) for one chunk of at most max_batch items."""
        raise NotImplementedError

    def predict(self, frames: np.ndarray, text: str | None) -> EmotionResult:
        return self.predict_batch([frames], [text])[0]

    def predict_batch(self, frames: list[np.ndarray], texts: list[str | None]) -> list[EmotionResult]:
        frames = _check_inputs(frames, texts, self.speech_dim)
        texts = [t if t and t.strip() else "" for t in texts]
        results = []
        for start in range(0, len(frames), self.max_batch):
            chunk_f, chunk_t = frames[start:start + self.max_batch], texts[start:start + self.max_batch]
            probs, has_text = self._probs(chunk_f, chunk_t)
            for p, f, ht in zip(probs, chunk_f, has_text):
                results.append(self._result(p, len(f) > 0, bool(ht)))
        return results

    def _result(self, p: np.ndarray, has_speech: bool, has_text: bool) -> EmotionResult:
        used = tuple(m for m, present in (("speech", has_speech), ("text", has_text))
                     if present and m in self.model_modalities)
        k = int(np.argmax(p))
        return EmotionResult(self.labels[k], {c: float(v) for c, v in zip(self.labels, p)}, float(p[k]), used)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} labels={list(self.labels)}>"


# ------------------------------------------------------------------------------------------ torch


class TorchBackend(_Backend):
    """The reference: TextFrontend (MiniLM) + FDRL from a checkpoint folder."""

    name = "torch"

    def __init__(self, checkpoint: str | Path, device: str = "cpu", threads: int | None = None):
        try:
            import torch

            from fdrl_core.checkpoint import CheckpointError, load_checkpoint
            from fdrl_core.model import FDRLInference
            from fdrl_core.text_frontend import TextFrontend
        except ImportError as e:
            raise BackendError(f"the torch backend needs PyTorch and transformers ({e}); use onnxruntime") from None
        self.device = "cuda" if device == "auto" and torch.cuda.is_available() else device.replace("auto", "cpu")
        if threads:
            torch.set_num_threads(int(threads))  # process-wide: torch has no per-model setting
        try:
            model = load_checkpoint(checkpoint, map_location=self.device)
        except CheckpointError as e:
            raise BackendError(str(e)) from None
        cfg = model.cfg
        super().__init__(cfg.labels.classes, cfg.modalities, cfg.speech_dim, cfg.speech_norm, cfg.speaker_decay)
        self.head = FDRLInference(model).to(self.device).eval()
        self.text = TextFrontend(max_tokens=cfg.max_text_tokens)
        self.text.model.to(self.device)
        self.checkpoint = Path(checkpoint)

    def _probs(self, frames, texts):
        import torch

        speech, smask = pad_frames(frames, self.speech_dim)
        with torch.inference_mode():
            if self.device == "cpu":
                states, tmask = self.text(texts)  # the training path, verbatim
                states, tmask = torch.from_numpy(states), torch.from_numpy(tmask)
            else:
                ids, tmask = (torch.from_numpy(a).to(self.device) for a in self.text.tokenizer(texts))
                states = self.text.model(input_ids=ids, attention_mask=tmask).last_hidden_state.float()
                tmask = tmask.bool()
            speech_t = torch.from_numpy(speech).to(self.device)
            probs, _ = self.head(speech_t, torch.from_numpy(smask).bool().to(self.device), states, tmask)
        return probs.float().cpu().numpy(), tmask.any(1).cpu().numpy()


# ------------------------------------------------------------------------------------------ onnxruntime


def _onnx_sidecar(onnx_dir: Path) -> OnnxSidecar:
    if not (onnx_dir / ONNX_FILE).is_file():
        raise BackendError(f"{onnx_dir} is not an ONNX export folder ({ONNX_FILE} is missing)")
    try:
        return OnnxSidecar.load(onnx_dir)
    except (OSError, ValueError, TypeError) as e:
        raise BackendError(f"{onnx_dir}: unreadable fdrl.json ({e}); export the model again") from None


class _TokenizedBackend(_Backend):
    """ONNX-graph backends: ids from the tokenizer.json next to the graph, never torch."""

    def __init__(self, onnx_dir: Path):
        from fdrl_core.assets import AssetError
        from fdrl_core.packed_onnx import PackError, ready
        from fdrl_core.tokenizer import TextTokenizer

        try:  # the bundled demo export keeps MiniLM packed: unpacked into the user cache on first use
            onnx_dir = ready(onnx_dir, log=log.info)
        except PackError as e:
            raise BackendError(str(e)) from None
        self.onnx_dir = onnx_dir
        self.sidecar = _onnx_sidecar(onnx_dir)
        try:
            self.tokenizer = TextTokenizer(onnx_dir, self.sidecar.max_text_tokens)
        except AssetError as e:
            raise BackendError(f"{onnx_dir}: no usable tokenizer next to the graph ({e})") from None
        extra = self.sidecar.extra
        super().__init__(self.sidecar.labels, extra.get("modalities", ("speech", "text")), self.sidecar.speech_dim,
                         extra.get("speech_norm", "none"), extra.get("speaker_decay"))

    def _feeds(self, frames, texts, max_frames=None, max_tokens=None) -> dict[str, np.ndarray]:
        speech, smask = pad_frames(frames, self.speech_dim, max_frames)
        ids, amask = self.tokenizer(texts)
        if max_tokens and ids.shape[1] > max_tokens:  # an engine profile narrower than the tokenizer limit
            ids, amask = ids[:, :max_tokens], amask[:, :max_tokens]
        return {"speech": speech, "speech_mask": smask, "input_ids": ids, "attention_mask": amask}


class OnnxRuntimeBackend(_TokenizedBackend):
    name = "onnxruntime"

    def __init__(self, onnx_dir: str | Path, device: str = "cpu", threads: int | None = None,
                 providers: list | None = None):
        """`providers`: an explicit onnxruntime provider list (names or (name, options) pairs, e.g. the
        TensorRT provider with its profile); it overrides `device`."""
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError(f"onnxruntime is not installed ({e}): pip install onnxruntime") from None
        super().__init__(Path(onnx_dir))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not debug_requested():  # ORT logs its own (coloured) copy of every load error; we say it in one line
            opts.log_severity_level = 4
        if threads:
            opts.intra_op_num_threads = int(threads)
        available = ort.get_available_providers()
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
                providers.insert(0, "CUDAExecutionProvider")
            elif device == "cuda":
                log.warning("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu); using the CPU")
        try:
            self.session = ort.InferenceSession(str(self.onnx_dir / ONNX_FILE), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            first = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", first)
            where = Path(onnx_dir) / ONNX_FILE  # the folder the user gave, not the unpacked copy in the cache
            raise BackendError(f"onnxruntime cannot load {where} (damaged or incomplete export? export it again): "
                               f"{first}") from None
        self.providers = tuple(self.session.get_providers())

    def _probs(self, frames, texts):
        feeds = self._feeds(frames, texts)
        probs = self.session.run(["probs"], feeds)[0]
        return probs, feeds["attention_mask"].any(1)


# ------------------------------------------------------------------------------------------ TensorRT


def engine_onnx_dir(engine: Path) -> Path | None:
    """The export folder an engine was built from: recorded in its sidecar, else the engine's folder."""
    side = EngineSidecar.path_for(engine)
    try:
        recorded = json.loads(side.read_text()).get("onnx_dir")
    except (OSError, ValueError):
        recorded = None
    for cand in (recorded, engine.parent):
        if cand and (Path(cand) / ONNX_FILE).is_file():
            return Path(cand)
    return None


def _cudart():
    from fdrl_core.cuda import cuda_runtime

    try:
        return cuda_runtime()
    except ImportError as e:
        raise BackendError(f"the TensorRT backend needs {e}") from None


class _TrtRunner:
    """Device buffers sized for the profile's maximum, reused every call; execute_async_v3 on one stream."""

    def __init__(self, engine_path: Path, trt, cudart):
        self.trt, self.cudart = trt, cudart
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)  # must outlive the engine
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not load {engine_path} (built by another TensorRT version or for "
                               "another GPU, or corrupt); rebuild it on this device with python -m export trt")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.limits = {n: [tuple(s) for s in self.engine.get_tensor_profile_shape(n, 0)] for n in self.inputs}
        self.max_batch = min(lim[2][0] for lim in self.limits.values())
        self.stream = self._call(cudart.cudaStreamCreate())
        self.buffers = {}
        for n in self.inputs:
            self.buffers[n] = self._call(cudart.cudaMalloc(int(np.prod(self.limits[n][2])) * self.dtypes[n].itemsize))
        for n in self.outputs:
            shape = [self.max_batch if d < 0 else d for d in self.engine.get_tensor_shape(n)]
            self.buffers[n] = self._call(cudart.cudaMalloc(int(np.prod(shape)) * self.dtypes[n].itemsize))

    def _call(self, result):
        from fdrl_core.cuda import CudaError, check

        try:
            return check(result)
        except CudaError as e:
            raise BackendError(str(e)) from None

    def limit(self, name: str, axis: int) -> int:
        return int(self.limits[name][2][axis])

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        keep = []
        for n in self.inputs:
            arr = np.ascontiguousarray(feeds[n], dtype=self.dtypes[n])
            lo, _, hi = self.limits[n]
            if any(s < a or s > b for s, a, b in zip(arr.shape, lo, hi)):
                raise ValueError(f"{n}{list(arr.shape)} is outside the engine's profile {list(lo)}..{list(hi)}")
            if not self.context.set_input_shape(n, arr.shape):
                raise BackendError(f"TensorRT rejected input shape {n}{list(arr.shape)}")
            self._call(cudart.cudaMemcpyAsync(self.buffers[n], arr.ctypes.data, arr.nbytes, h2d, self.stream))
            self.context.set_tensor_address(n, int(self.buffers[n]))
            keep.append(arr)  # host memory must live until the copies are done
        out = {}
        for n in self.outputs:
            out[n] = np.empty(tuple(self.context.get_tensor_shape(n)), dtype=self.dtypes[n])
            self.context.set_tensor_address(n, int(self.buffers[n]))
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        for n, arr in out.items():
            self._call(cudart.cudaMemcpyAsync(arr.ctypes.data, self.buffers[n], arr.nbytes, d2h, self.stream))
        self._call(cudart.cudaStreamSynchronize(self.stream))
        return out

    def close(self):
        for ptr in self.buffers.values():
            self.cudart.cudaFree(ptr)
        self.buffers = {}
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass


class TensorRTBackend(_TokenizedBackend):
    name = "tensorrt"

    def __init__(self, engine: str | Path, device_info=None):
        from fdrl_core.engine_cache import DeviceError, detect_device, engine_problem

        engine = Path(engine)
        onnx_dir = engine_onnx_dir(engine)
        if onnx_dir is None:
            raise BackendError(f"{engine}: cannot find the ONNX export folder it was built from (tokenizer.json, "
                               "fdrl.json); keep the engine in that folder or rebuild it with python -m export trt")
        super().__init__(onnx_dir)
        try:
            device_info = device_info or detect_device()
        except DeviceError as e:
            raise BackendError(str(e)) from None
        why = engine_problem(engine, device_info, self.sidecar.onnx_sha256)
        if why:  # checked before deserialising: a foreign engine can crash the process instead of failing
            raise BackendError(f"{engine.name}: {why}; rebuild it here (python -m export ensure-engine)")
        import tensorrt as trt

        self.runner = _TrtRunner(engine, trt, _cudart())
        self.max_batch = self.runner.max_batch
        self.engine = engine
        self.precision = EngineSidecar.load(engine).precision

    def _probs(self, frames, texts):
        feeds = self._feeds(frames, texts, max_frames=self.runner.limit("speech", 1),
                            max_tokens=self.runner.limit("input_ids", 1))
        probs = self.runner(feeds)["probs"]
        return probs.astype(np.float32), feeds["attention_mask"].any(1)


# ------------------------------------------------------------------------------------------ choosing


def model_kind(path: str | Path) -> str:
    """'engine' | 'onnx' | 'checkpoint' for what `path` is; BackendError when it is none of them."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BackendError(f"model not found: {p}")
    if p.is_file():
        if p.suffix in ENGINE_SUFFIXES or EngineSidecar.path_for(p).is_file():
            return "engine"
        if p.name == ONNX_FILE:
            return "onnx"
        raise BackendError(f"{p} is not a model: expected an FDRL checkpoint folder, an ONNX export folder "
                           f"or a TensorRT engine ({'/'.join(ENGINE_SUFFIXES)} with its .json sidecar)")
    if (p / ONNX_FILE).is_file():
        return "onnx"
    if (p / "model.safetensors").is_file() and (p / "config.json").is_file():
        return "checkpoint"
    raise BackendError(f"{p} is not a model folder: no model.safetensors + config.json (checkpoint) and no "
                       f"{ONNX_FILE} (ONNX export)")


def _engine_candidates(onnx_dir: Path, engine_cache: Path | None) -> list[Path]:
    from fdrl_core.engine_cache import default_cache_dir

    found = []
    for folder in (onnx_dir, engine_cache or default_cache_dir()):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix in ENGINE_SUFFIXES)
    return found


def _trt_device():
    """This machine's TensorRT + GPU, or the reason there is none."""
    from fdrl_core.engine_cache import DeviceError, detect_device

    try:
        return detect_device(), None
    except DeviceError as e:
        return None, str(e)


def plan(kind: str, model: str | Path | None, *, engine_cache: str | Path | None = None,
         device_probe=_trt_device) -> tuple[list[tuple[str, Path]], list[str]]:
    """The backends to try, in order, as (kind, path), and notes on what was passed over and why.

    `device_probe` returns (DeviceInfo or None, reason); it is called only when an engine is in play.
    """
    from fdrl_core.assets import default_model_path

    if kind not in KINDS:
        raise BackendError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    path = Path(model).expanduser() if model else default_model_path()
    what = model_kind(path)
    if what == "onnx" and path.is_file():
        path = path.parent
    cache = Path(engine_cache).expanduser() if engine_cache else None
    notes: list[str] = []

    if kind == "torch":
        if what != "checkpoint":
            raise BackendError(f"the torch backend needs a checkpoint folder; {path} is an {what} "
                               f"{'file' if path.is_file() else 'folder'}")
        return [("torch", path)], notes
    if kind == "onnxruntime":
        if what == "engine":
            onnx_dir = engine_onnx_dir(path)
            if onnx_dir is None:
                raise BackendError(f"{path}: cannot find the ONNX export folder this engine was built from")
            return [("onnxruntime", onnx_dir)], notes
        if what == "checkpoint":
            if not (path / ONNX_SUBDIR / ONNX_FILE).is_file():
                raise BackendError(f"{path} has no ONNX export; run python -m export onnx --model {path}")
            return [("onnxruntime", path / ONNX_SUBDIR)], notes
        return [("onnxruntime", path)], notes
    if kind == "tensorrt":
        if what != "engine":
            onnx_dir = path / ONNX_SUBDIR if what == "checkpoint" else path
            device, why = device_probe()
            if device is None:
                raise BackendError(why)
            engine = _pick_engine(onnx_dir, cache, device, notes) if onnx_dir.is_dir() else None
            if engine is None:
                raise BackendError(f"no TensorRT engine for this device next to {onnx_dir} or in the engine cache; "
                                   "build one with python -m export ensure-engine --onnx " + str(onnx_dir))
            return [("tensorrt", engine)], notes
        return [("tensorrt", path)], notes

    # auto: TensorRT (engine + GPU) > onnxruntime (an export) > torch (a checkpoint)
    order: list[tuple[str, Path]] = []
    if what == "engine":
        device, why = device_probe()
        if device is not None:
            order.append(("tensorrt", path))
        else:
            notes.append(f"not using TensorRT engine {path.name}: {why}")
        onnx_dir = engine_onnx_dir(path)
        if onnx_dir is not None:
            order.append(("onnxruntime", onnx_dir))
        if not order:
            raise BackendError(f"{path}: {why}, and the ONNX export it was built from is not next to it")
        return order, notes
    onnx_dir = path if what == "onnx" else path / ONNX_SUBDIR
    has_onnx = (onnx_dir / ONNX_FILE).is_file()
    if what == "checkpoint":
        from fdrl_core.checkpoint import read_config

        classes = list(read_config(path).labels.classes)  # a broken config.json/labels.json, named, before all
    if has_onnx and what == "checkpoint" and not _export_matches(onnx_dir, path):
        notes.append(f"not using {onnx_dir}: it was exported from another version of {path}; export it again")
        has_onnx = False
    elif has_onnx and what == "checkpoint" and _onnx_sidecar(onnx_dir).labels != classes:
        notes.append(f"not using {onnx_dir}: its labels {_onnx_sidecar(onnx_dir).labels} are not those of "
                     f"{path / 'labels.json'} {classes}; export it again")
        has_onnx = False
    if has_onnx:
        if _engine_candidates(onnx_dir, cache):
            device, why = device_probe()
            engine = _pick_engine(onnx_dir, cache, device, notes) if device is not None else None
            if device is None:
                notes.append(f"not using TensorRT: {why}")
            if engine is not None:
                order.append(("tensorrt", engine))
        order.append(("onnxruntime", onnx_dir))
    if what == "checkpoint":
        order.append(("torch", path))
    return order, notes


def _export_matches(onnx_dir: Path, checkpoint: Path) -> bool:
    from fdrl_core.checkpoint import checkpoint_hash

    try:
        return _onnx_sidecar(onnx_dir).checkpoint_sha256 == checkpoint_hash(checkpoint)
    except (BackendError, OSError):
        return False


def _pick_engine(onnx_dir: Path, cache: Path | None, device, notes: list[str]) -> Path | None:
    from fdrl_core.engine_cache import engine_problem

    sha = _onnx_sidecar(onnx_dir).onnx_sha256
    for engine in _engine_candidates(onnx_dir, cache):
        why = engine_problem(engine, device, sha)
        if why is None:
            return engine
        notes.append(f"not using TensorRT engine {engine.name}: {why}")
    return None


def open_backend(kind: str = "auto", model: str | Path | None = None, *, device: str = "cpu",
                 threads: int | None = None, engine_cache: str | Path | None = None) -> EmotionBackend:
    """Open the emotion backend. `model`: checkpoint folder, ONNX export folder or TensorRT engine
    (default: $FDRL_MODEL, else the bundled demo model). `device` is for torch/onnxruntime ("cpu",
    "cuda" or "auto"); TensorRT always runs on the GPU. `threads`: intra-op CPU threads (default: the
    library's own choice; torch's setting is process-wide). With kind="auto" a backend that fails to open
    is logged as a warning and the next one is tried; an explicit kind raises BackendError."""
    order, notes = plan(kind, model, engine_cache=engine_cache)
    for note in notes:
        log.warning(note)
    errors = []
    for i, (which, path) in enumerate(order):
        try:
            if which == "tensorrt":
                return TensorRTBackend(path)
            if which == "onnxruntime":
                return OnnxRuntimeBackend(path, device=device, threads=threads)
            return TorchBackend(path, device=device, threads=threads)
        except BackendError as e:
            if kind != "auto" or len(order) == 1:  # nothing to fall back to: the one error, said once
                raise
            errors.append(f"{which}: {e}")
            if i + 1 < len(order):
                log.warning("%s backend unavailable (%s); falling back", which, e)
    raise BackendError("no emotion backend could be opened: " + "; ".join(errors or ["nothing to open"]))
