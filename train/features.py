"""Feature cache: frozen-backbone features computed once per utterance, through fdrl_core's frontends.

The Whisper encoder costs ~0.05-0.6 s per utterance on a CPU (window sized to the utterance) while the
FDRL head trains in milliseconds, so every run, fold, seed and ablation reads the same cached arrays.

Layout (content-addressed, so one cache serves every corpus and nothing stale is ever read):

    ROOT/speech-<frontend key>/frontend.json            what produced these features
    ROOT/speech-<frontend key>/<aa>/<audio sha256>.npy  [T, d] Whisper frames of that audio file
    ROOT/text-<frontend key>/<aa>/<text sha256>.npy     [N, d] MiniLM token states of that text (N may be 0)

The frontend key hashes the model folder, the sha256 of its weights file and the options that change
the numbers (compute type, device, encoder window policy, max tokens); the file name hashes the audio
bytes or the text. A new model, another compute type or window, or an edited wav therefore misses the
cache instead of reusing old arrays. Arrays are stored as float16 by default (half the disk; the
rounding, ~1e-3 relative, is far below what changes a prediction) and always loaded as float32.
Entries are written atomically (tmp + rename), so an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fdrl_core.assets import text_model_dir, whisper_model_dir
from fdrl_core.audio import AudioError, load_audio
from fdrl_core.checkpoint import file_sha256
from fdrl_core.speech_frontend import DEFAULT_WINDOW, WindowPolicy

CACHE_ENV = "FDRL_FEATURE_CACHE"
_WEIGHT_FILES = ("model.bin", "model.safetensors", "pytorch_model.bin")


def default_cache_dir() -> Path:
    """$FDRL_FEATURE_CACHE, else $XDG_CACHE_HOME/fdrl/features, else ~/.cache/fdrl/features."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fdrl" / "features"


_hash_memo: dict[tuple[str, int, int], str] = {}


def _file_hash(path: Path) -> str:
    """sha256 of a file, memoised per process on (path, size, mtime): model files are hashed once."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_memo:
        _hash_memo[key] = file_sha256(path)
    return _hash_memo[key]


def _weights_file(folder: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no weights file ({', '.join(_WEIGHT_FILES)})")


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class FrontendOptions:
    """Which backbones make the features and how; all of it is part of the cache key."""

    whisper_model: str | None = None  # CTranslate2 Whisper folder; default: the packaged tiny.en
    text_model: str | None = None  # BERT-style folder with tokenizer.json; default: packaged MiniLM
    device: str = "cpu"  # CTranslate2 device for the Whisper encoder
    compute_type: str = "int8"  # the run-time default, so training sees the frames inference sees
    # encoder window per utterance (fdrl_core.speech_frontend); recorded in meta.json, and the run-time
    # encodes with the policy of the model it loads
    window: WindowPolicy = DEFAULT_WINDOW
    max_text_tokens: int = 128
    cpu_threads: int = 0  # 0: the libraries' defaults


@dataclass(frozen=True)
class FeatureEntry:
    speech: Path
    text: Path


class FeatureCache:
    def __init__(self, root: str | Path | None = None, options: FrontendOptions | None = None,
                 dtype: str = "float16", *, speech_frontend=None, text_frontend=None):
        """speech_frontend/text_frontend: already loaded frontends to reuse (they must match `options`)."""
        if dtype not in ("float16", "float32"):
            raise ValueError(f"cache dtype must be float16 or float32, not {dtype!r}")
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.options = options or FrontendOptions()
        self.dtype = np.dtype(dtype)
        self._speech_frontend = speech_frontend
        self._text_frontend = text_frontend
        self._speech_id: dict | None = None
        self._text_id: dict | None = None

    # ------------------------------------------------------------------ identities (no model is loaded)

    @property
    def speech_identity(self) -> dict:
        if self._speech_id is None:
            folder = whisper_model_dir(self.options.whisper_model).resolve()
            weights = _weights_file(folder)
            ident = {"kind": "whisper-ct2-encoder", "model": str(folder), "weights": weights.name,
                     "weights_sha256": _file_hash(weights), "compute_type": self.options.compute_type,
                     "device": self.options.device.split(":")[0]}
            if self.options.window != WindowPolicy.legacy():  # legacy features keep their old cache key
                ident["window"] = self.options.window.to_dict()
            self._speech_id = {**ident, "key": _key(ident)}
        return self._speech_id

    @property
    def text_identity(self) -> dict:
        if self._text_id is None:
            folder = text_model_dir(self.options.text_model).resolve()
            weights = _weights_file(folder)
            ident = {"kind": "hf-token-states", "model": str(folder), "weights": weights.name,
                     "weights_sha256": _file_hash(weights),
                     "tokenizer_sha256": _file_hash(folder / "tokenizer.json"),
                     "max_tokens": self.options.max_text_tokens}
            self._text_id = {**ident, "key": _key(ident)}
        return self._text_id

    def speech_dir(self) -> Path:
        return self.root / f"speech-{self.speech_identity['key']}"

    def text_dir(self) -> Path:
        return self.root / f"text-{self.text_identity['key']}"

    def speech_path(self, audio_sha: str) -> Path:
        return self.speech_dir() / audio_sha[:2] / f"{audio_sha}.npy"

    def text_path(self, text: str) -> Path:
        h = text_sha(text)
        return self.text_dir() / h[:2] / f"{h}.npy"

    # ------------------------------------------------------------------ frontends (loaded on first miss)

    @property
    def speech_frontend(self):
        if self._speech_frontend is None:
            from fdrl_core.speech_frontend import SpeechFrontend

            o = self.options
            self._speech_frontend = SpeechFrontend(o.whisper_model, device=o.device, compute_type=o.compute_type,
                                                   cpu_threads=o.cpu_threads, window=o.window)
        return self._speech_frontend

    @property
    def text_frontend(self):
        if self._text_frontend is None:
            from fdrl_core.text_frontend import TextFrontend

            o = self.options
            self._text_frontend = TextFrontend(o.text_model, max_tokens=o.max_text_tokens,
                                               threads=o.cpu_threads or None)
        return self._text_frontend

    # ------------------------------------------------------------------ building and reading

    def build(self, utts: Sequence, *, batch_size: int = 8, text_batch_size: int = 32,
              progress: bool = True) -> dict[str, FeatureEntry]:
        """Features for every utterance (computing only the missing ones); returns id -> entry.

        Raises AudioError naming the utterance when an audio file cannot be read.
        """
        audio_hash: dict[str, str] = {}
        for u in tqdm(utts, desc="hashing audio", unit="utt", disable=not progress or len(utts) < 200,
                      leave=False):
            try:
                audio_hash[u.id] = _file_hash(Path(u.path))
            except OSError as e:
                raise AudioError(f"utterance {u.id}: cannot read {u.path} ({e.strerror or e})") from None
        index = {u.id: FeatureEntry(self.speech_path(audio_hash[u.id]), self.text_path(u.text)) for u in utts}

        todo_speech: dict[Path, object] = {}
        for u in utts:
            p = index[u.id].speech
            if p not in todo_speech and not p.is_file():
                todo_speech[p] = u
        if todo_speech:
            self._write_identity(self.speech_dir(), self.speech_identity)
            # similar lengths side by side: a batch is one encoder call per window size
            items = sorted(todo_speech.items(), key=lambda kv: _size(kv[1].path))
            with tqdm(total=len(items), desc="speech features", unit="utt", disable=not progress) as bar:
                for i in range(0, len(items), batch_size):
                    chunk = items[i: i + batch_size]
                    audios = []
                    for _, u in chunk:
                        try:
                            audios.append(load_audio(u.path))
                        except AudioError as e:
                            raise AudioError(f"utterance {u.id}: {e}") from None
                    for (path, _), frames in zip(chunk, self.speech_frontend.frames_batch(audios, self.options.window)):
                        self._save(path, frames)
                    bar.update(len(chunk))

        todo_text: dict[Path, str] = {}
        for u in utts:
            p = index[u.id].text
            if p not in todo_text and not p.is_file():
                todo_text[p] = u.text
        if todo_text:
            self._write_identity(self.text_dir(), self.text_identity)
            items = list(todo_text.items())
            with tqdm(total=len(items), desc="text features", unit="utt", disable=not progress) as bar:
                for i in range(0, len(items), text_batch_size):
                    chunk = items[i: i + text_batch_size]
                    states, mask = self.text_frontend([t for _, t in chunk])
                    for j, (path, _) in enumerate(chunk):
                        self._save(path, states[j, : int(mask[j].sum())])
                    bar.update(len(chunk))
        return index

    @staticmethod
    def load(entry: FeatureEntry) -> tuple[np.ndarray, np.ndarray]:
        """(speech frames [T, d], text states [N, d]) as float32."""
        return (np.load(entry.speech).astype(np.float32, copy=False),
                np.load(entry.text).astype(np.float32, copy=False))

    def identity(self) -> dict:
        """What produced the features: goes into meta.json of every model trained on them."""
        return {"speech": self.speech_identity, "text": self.text_identity, "dtype": self.dtype.name}

    # ------------------------------------------------------------------ internals

    def _save(self, path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(array, dtype=self.dtype))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _write_identity(folder: Path, ident: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "frontend.json"
        if not target.is_file():
            tmp = folder / f".frontend.json.{os.getpid()}"
            tmp.write_text(json.dumps(ident, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, target)


def _size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # load_audio reports it with the utterance's name


def _key(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
