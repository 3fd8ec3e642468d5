"""ONNX export, parity check, TensorRT op lint, engine build options and the ensure-engine decision.

The MiniLM + FDRL export is the expensive part (~25 s of exporter time on a 2-core CPU), so one tiny
random checkpoint (d_model 64) is exported once per test session and shared with test_backends.py.
"""

import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

_EXPORT: dict = {}


def exported_model(tmp_path_factory) -> dict:
    """{"ckpt", "onnx", "seconds"}: a random d_model-64 checkpoint and its export in <ckpt>/onnx."""
    if not _EXPORT:
        import torch

        from export.onnx_export import export_onnx
        from fdrl_core.checkpoint import save_checkpoint
        from fdrl_core.config import FDRLConfig
        from fdrl_core.model import FDRL

        torch.manual_seed(0)
        ckpt = save_checkpoint(FDRL(FDRLConfig(d_model=64)).eval(), tmp_path_factory.mktemp("export") / "ckpt")
        t0 = time.perf_counter()
        export_onnx(ckpt, ckpt / "onnx", log=lambda msg: None)
        _EXPORT.update(ckpt=ckpt, onnx=ckpt / "onnx", seconds=time.perf_counter() - t0)
        print(f"\n[export of MiniLM + FDRL(d_model 64) took {_EXPORT['seconds']:.1f} s]")
    return _EXPORT


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return exported_model(tmp_path_factory)


def _tiny_onnx_dir(folder, labels=("neutral", "happy")):
    """A valid two-node graph + sidecar: enough for code that only hashes the graph and reads fdrl.json."""
    import onnx
    from onnx import TensorProto, helper

    from export.onnx_export import onnx_sha256
    from fdrl_core.export_format import OnnxSidecar

    folder.mkdir(parents=True, exist_ok=True)
    x = helper.make_tensor_value_info("speech", TensorProto.FLOAT, ["b", 2])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["b", 2])
    graph = helper.make_graph([helper.make_node("Softmax", ["speech"], ["probs"])], "tiny", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(folder / "fdrl.onnx"))
    OnnxSidecar(labels=list(labels), inputs={}, outputs=["probs"], opset=18, source_checkpoint="none",
                checkpoint_sha256="0", onnx_sha256=onnx_sha256(folder)).save(folder)
    return folder


# ----------------------------------------------------------------------------------------- export


def test_export_writes_graph_weights_tokenizer_and_sidecar(exported):
    import onnx

    from export.onnx_export import onnx_sha256
    from fdrl_core.checkpoint import checkpoint_hash, read_config
    from fdrl_core.export_format import INPUTS, OUTPUTS, OnnxSidecar

    out = exported["onnx"]
    for name in ("fdrl.onnx", "fdrl.onnx.data", "tokenizer.json", "fdrl.json"):
        assert (out / name).is_file(), name
    side = OnnxSidecar.load(out)
    cfg = read_config(exported["ckpt"])
    assert side.labels == list(cfg.labels.classes)
    assert list(side.inputs) == list(INPUTS) and side.outputs == list(OUTPUTS)
    assert side.inputs["speech"]["shape"] == ["batch", "speech_frames", 384]
    assert side.inputs["attention_mask"] == {"dtype": "int64", "shape": ["batch", "text_tokens"]}
    assert 17 <= side.opset <= 20
    assert side.checkpoint_sha256 == checkpoint_hash(exported["ckpt"])
    assert side.onnx_sha256 == onnx_sha256(out)
    assert side.source_checkpoint == str(exported["ckpt"].resolve())

    model = onnx.load(str(out / "fdrl.onnx"), load_external_data=False)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {"speech": ["batch", "speech_frames", 384], "speech_mask": ["batch", "speech_frames"],
                    "input_ids": ["batch", "text_tokens"], "attention_mask": ["batch", "text_tokens"]}
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert types["speech_mask"] == types["input_ids"] == onnx.TensorProto.INT64
    assert [o.name for o in model.graph.output] == ["probs", "logits"]


def test_check_passes_on_random_shapes_and_spoken_utterances(exported, capsys):
    from export.check import RANDOM_CASES, check_export

    rep = check_export(exported["onnx"], exported["ckpt"], real=True)
    printed = capsys.readouterr().out
    assert rep.ok, rep.failures
    assert "onnx.checker: OK" in printed and "every op is in the TensorRT 10.3" in printed
    assert len([c for c in rep.cases if not c.real]) == len(RANDOM_CASES)
    real = [c for c in rep.cases if c.real]
    assert real and all(c.argmax_agree == c.items for c in real)
    assert max(c.max_abs_diff for c in rep.cases) <= 1e-4
    assert "argmax agrees on" in printed


def test_empty_text_in_the_graph_is_speech_only(exported):
    """attention_mask all zero = no transcript: the graph must give what FDRL gives with no text at all."""
    import onnxruntime as ort
    import torch

    from export.check import random_feeds
    from fdrl_core.checkpoint import load_checkpoint

    feeds = random_feeds(3, 90, 7, "empty", seed=3)
    sess = ort.InferenceSession(str(exported["onnx"] / "fdrl.onnx"), providers=["CPUExecutionProvider"])
    probs, logits = sess.run(["probs", "logits"], feeds)
    assert np.isfinite(probs).all() and np.isfinite(logits).all()
    model = load_checkpoint(exported["ckpt"])
    with torch.no_grad():
        ref = model(torch.from_numpy(feeds["speech"]), torch.from_numpy(feeds["speech_mask"]).bool(), None, None)
    np.testing.assert_allclose(probs, torch.softmax(ref.logits, -1).numpy(), atol=1e-4)


def test_check_fails_for_another_checkpoint(exported, tmp_path, capsys):
    import torch

    from export.check import check_export
    from fdrl_core.checkpoint import save_checkpoint
    from fdrl_core.config import FDRLConfig
    from fdrl_core.model import FDRL

    torch.manual_seed(7)
    other = save_checkpoint(FDRL(FDRLConfig(d_model=64)).eval(), tmp_path / "other")
    rep = check_export(exported["onnx"], other, real=False)
    capsys.readouterr()
    assert not rep.ok
    assert any("not the checkpoint this graph was exported from" in f for f in rep.failures)
    assert any("parity failed" in f for f in rep.failures)


# ----------------------------------------------------------------------------------------- lint


def test_lint_names_ops_and_dynamic_axes_tensorrt_10_3_cannot_parse():
    from onnx import TensorProto, helper

    from export.trt_ops import lint_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "one", "two"], ["axes"]),
             helper.make_node("Squeeze", ["x", "axes"], ["sq"]), helper.make_node("HannWindow", ["n"], ["w"]),
             helper.make_node("Identity", ["sq"], ["y"])]
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("one", 1), ("two", 2), ("n", 4))]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    rep = lint_model(model)
    assert not rep.ok
    assert rep.unsupported == {"HannWindow": 1}
    assert len(rep.restrictions) == 1 and "Squeeze" in rep.restrictions[0]
    text = "\n".join(rep.lines())
    assert "unsupported by TensorRT 10.3: HannWindow" in text


# ----------------------------------------------------------------------------------------- CLI


def test_cli_bad_model_is_one_line_error(tmp_path, capsys):
    from export.__main__ import main

    assert main(["onnx", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint folder not found" in err
    assert main(["onnx", "--model", str(tmp_path), "--opset", "23"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("opset" in err or "not an FDRL checkpoint" in err)
    assert main(["check", "--onnx", str(tmp_path)]) == 2  # the user's input, not a failed check
    assert "not an ONNX export folder" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["onnx", "--out", str(blocker)]) == 2  # refused before the ~30 s export
    assert "exists and is not a folder" in capsys.readouterr().err


def test_cli_trt_without_tensorrt_says_so_in_one_line(tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; this checks the message on machines without it")
    except ImportError:
        pass
    from export.__main__ import main

    onnx_dir = _tiny_onnx_dir(tmp_path / "onnx")
    assert main(["trt", "--onnx", str(onnx_dir), "--fp16"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("export trt: TensorRT is not installed") and "python3-libnvinfer" in err


# ----------------------------------------------------------------------------------------- engines


def test_profile_covers_one_whisper_window_and_the_tokenizer_limit(exported):
    from export.trt_build import BuildOptions, profile_shapes
    from fdrl_core.export_format import OnnxSidecar

    shapes = profile_shapes(OnnxSidecar.load(exported["onnx"]), BuildOptions(fp16=True))
    assert shapes["speech"] == [[1, 1, 384], [1, 150, 384], [8, 1500, 384]]
    assert shapes["speech_mask"] == [[1, 1], [1, 150], [8, 1500]]
    assert shapes["input_ids"] == shapes["attention_mask"] == [[1, 1], [1, 16], [8, 128]]
    assert BuildOptions(fp16=True).precision == "fp16" and BuildOptions(int8=True).precision == "int8"


DEV = ("10.3.0", "Orin", "8.7")


def _fake_engine(folder, name, onnx_sha, tensorrt_version="10.3.0", gpu="Orin", cc="8.7", precision="fp16"):
    from fdrl_core.export_format import EngineSidecar

    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / name
    engine.write_bytes(b"not a real plan")
    EngineSidecar(tensorrt_version, gpu, cc, precision, onnx_sha, {}).save(engine)
    return engine


def test_decide_reuses_only_an_engine_built_here_from_this_graph(tmp_path):
    from fdrl_core.engine_cache import DeviceInfo, decide, engine_name

    dev = DeviceInfo(*DEV)
    sha = "a" * 64
    first = decide(tmp_path / "cache", sha, dev, "fp16")
    assert first.action == "build" and first.engine.name == engine_name(sha, "fp16", dev)
    assert first.engine.name.startswith("fdrl-aaaaaaaaaaaa-fp16-orin-sm87-trt10.3.0")

    cache = tmp_path / "cache"
    _fake_engine(cache, "a.engine", sha, gpu="NVIDIA GeForce RTX 4090", cc="8.9")
    _fake_engine(cache, "b.engine", sha, tensorrt_version="10.16.1")
    _fake_engine(cache, "c.engine", "b" * 64)
    _fake_engine(cache, "d.engine", sha, precision="fp32")
    d = decide(cache, sha, dev, "fp16")
    assert d.action == "build"
    why = "\n".join(d.rejected)
    assert "built for NVIDIA GeForce RTX 4090 (compute 8.9), this GPU is Orin (compute 8.7)" in why
    assert "built with TensorRT 10.16.1, this is TensorRT 10.3.0" in why
    assert "different ONNX model" in why and "precision is fp32" in why

    good = _fake_engine(cache, "e.engine", sha)
    d = decide(cache, sha, dev, "fp16")
    assert d.action == "use" and d.engine == good


def test_ensure_engine_exit_codes(tmp_path):
    from export.ensure_engine import EXIT_NO_ENGINE, EXIT_OK, ensure_engine
    from export.trt_build import BuildError
    from fdrl_core.engine_cache import DeviceInfo

    onnx_dir = _tiny_onnx_dir(tmp_path / "onnx")
    dev = DeviceInfo(*DEV)
    built = []

    def fake_build(onnx, out, opts, device, log):  # stands in for TensorRT: writes what build_engine writes
        from export.onnx_export import onnx_sha256

        built.append(out)
        _fake_engine(out.parent, out.name, onnx_sha256(onnx), precision=opts.precision)

    code, path = ensure_engine(onnx_dir, tmp_path / "cache", fp16=True, device=dev, build=fake_build,
                               log=lambda m: None)
    assert code == EXIT_OK and len(built) == 1 and path == str(built[0])
    code, again = ensure_engine(onnx_dir, tmp_path / "cache", fp16=True, device=dev, build=fake_build,
                                log=lambda m: None)
    assert code == EXIT_OK and again == path and len(built) == 1  # cached: no second build

    def failing_build(*a, **k):
        raise BuildError("TensorRT could not parse the ONNX graph")

    code, why = ensure_engine(onnx_dir, tmp_path / "cache", fp16=False, device=dev, build=failing_build,
                              log=lambda m: None)
    assert code == EXIT_NO_ENGINE and "could not parse" in why


def test_ensure_engine_cli_without_tensorrt_exits_3(tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    from export.__main__ import main

    onnx_dir = _tiny_onnx_dir(tmp_path / "onnx")
    assert main(["ensure-engine", "--onnx", str(onnx_dir), "--cache", str(tmp_path / "c")]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "TensorRT is not installed" in captured.err


def test_calibration_batches_have_the_profile_shape(tmp_path):
    from export.calib import batches, find_items
    from fdrl_core.tokenizer import TextTokenizer

    rng = np.random.default_rng(0)
    for i, n in enumerate((40, 300, 150)):
        np.save(tmp_path / f"u{i}.npy", rng.standard_normal((n, 384)).astype(np.float16))
    (tmp_path / "u0.txt").write_text("hello there, how are you doing today?")
    items = find_items(tmp_path, limit=10)
    feeds = list(batches(items, TextTokenizer(), batch=3, speech_frames=150, text_tokens=16))
    assert len(feeds) == 1
    f = feeds[0]
    assert f["speech"].shape == (3, 150, 384) and f["speech"].dtype == np.float32
    assert f["speech_mask"].sum(1).tolist() == [40, 150, 150]
    assert f["input_ids"].shape == f["attention_mask"].shape == (3, 16)
    assert f["attention_mask"].sum(1).tolist()[1:] == [0, 0] and f["attention_mask"][0].sum() > 5


# a skip mark, not a skip in the body: fixtures (the MiniLM export) are set up before the body runs, and a GPU
# machine without TensorRT (or without MiniLM weights) must skip these, not error in the fixture
needs_tensorrt = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None,
    reason="TensorRT is not installed (JetPack python3-libnvinfer or pip tensorrt-cu12>=10.3,<11); "
           "engine tests need it and a GPU")


def _tensorrt_gpu():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (JetPack python3-libnvinfer or "
                                                  "pip tensorrt-cu12>=10.3,<11); engine tests need it and a GPU")
    from fdrl_core.engine_cache import DeviceError, detect_device

    try:
        return trt, detect_device()
    except DeviceError as e:
        pytest.skip(f"no CUDA GPU for TensorRT: {e}")


@pytest.mark.gpu
@needs_tensorrt
def test_tensorrt_engine_matches_onnxruntime(exported, tmp_path):
    _tensorrt_gpu()
    from export.trt_build import BuildOptions, build_engine
    from stream.backends import OnnxRuntimeBackend, TensorRTBackend

    engine = tmp_path / "fdrl_fp16.engine"
    side = build_engine(exported["onnx"], engine, BuildOptions(fp16=True), log=lambda m: None)
    assert side.precision == "fp16" and json.loads(engine.with_name(engine.name + ".json").read_text())["onnx_dir"]
    trt_b, ort_b = TensorRTBackend(engine), OnnxRuntimeBackend(exported["onnx"])
    rng = np.random.default_rng(1)
    frames = [rng.standard_normal((n, 384)).astype(np.float32) for n in (150, 37, 1500)]
    texts = ["I am so glad you came", "", None]
    for a, b in zip(trt_b.predict_batch(frames, texts), ort_b.predict_batch(frames, texts)):
        assert max(abs(a.probs[k] - b.probs[k]) for k in a.probs) < 1e-2
        assert a.modalities == b.modalities


# ----------------------------------------------------------------------------------------- explicit INT8


def test_quantize_writes_a_qdq_export_that_onnxruntime_runs(exported, tmp_path, capsys):
    """INT8 the way TensorRT 10 wants it: Q/DQ nodes (symmetric, zero point 0) calibrated on real-shaped
    feeds, in a complete export folder of its own; the float graph is left as it was."""
    import onnx
    import onnxruntime as ort

    from export.__main__ import main
    from export.check import random_feeds
    from export.onnx_export import onnx_sha256
    from export.quantize import has_qdq
    from fdrl_core.export_format import OnnxSidecar

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        np.save(calib / f"u{i}.npy", rng.standard_normal((60 + 10 * i, 384)).astype(np.float32))
        (calib / f"u{i}.txt").write_text(["I am so happy today", "leave me alone", "fine", ""][i % 4])
    out = tmp_path / "int8"
    assert main(["quantize", "--onnx", str(exported["onnx"]), "--calib", str(calib), "--out", str(out),
                 "--items", "8", "--method", "minmax"]) == 0
    capsys.readouterr()
    assert has_qdq(out / "fdrl.onnx") and not has_qdq(exported["onnx"] / "fdrl.onnx")
    model = onnx.load(str(out / "fdrl.onnx"), load_external_data=False)
    zero_points = [i for i in model.graph.initializer if "zero_point" in i.name]
    assert zero_points and all(not any(onnx.numpy_helper.to_array(z).ravel()) for z in zero_points)  # symmetric
    side = OnnxSidecar.load(out)
    assert side.onnx_sha256 == onnx_sha256(out) != OnnxSidecar.load(exported["onnx"]).onnx_sha256
    assert side.extra["quantization"]["format"].startswith("QDQ int8")
    assert (out / "tokenizer.json").is_file()
    feeds = random_feeds(2, 50, 6, "ragged")
    probs = ort.InferenceSession(str(out / "fdrl.onnx"), providers=["CPUExecutionProvider"]).run(["probs"], feeds)[0]
    assert np.isfinite(probs).all() and np.allclose(probs.sum(-1), 1, atol=1e-4)
    assert main(["quantize", "--onnx", str(out), "--calib", str(calib), "--out", str(tmp_path / "again")]) == 1
    assert "already quantized" in capsys.readouterr().err


def test_calibration_reads_a_manifest_without_the_training_package(tmp_path):
    import subprocess
    import sys

    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.csv").write_text("path,text,label\na.wav,hello there,happy\n/abs/b.wav,,sad\n")
    code = ("import sys; from export.calib import find_items; items = find_items(sys.argv[1], 10); "
            "assert 'train' not in sys.modules and 'train.corpora' not in sys.modules, 'imported train'; "
            "print([(str(i.wav), i.text) for i in items])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.csv")], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([(str(tmp_path / "a.wav"), "hello there"), ("/abs/b.wav", "")])
