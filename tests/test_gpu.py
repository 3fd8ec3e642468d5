"""The CUDA path without a GPU: the Whisper encoder output handed over from the device (a stand-in for a
CUDA StorageView), plus `gpu`-marked tests that run the real thing where CTranslate2 sees a GPU."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

ctranslate2 = pytest.importorskip("ctranslate2")


class CudaStorageStandIn:
    """Behaves like a ctranslate2.StorageView on a CUDA device: shape/dtype/device, no array interface,
    to_device() and to() as in CTranslate2 4.x. Records what it was asked to do."""

    device = "cuda"
    device_index = 0

    def __init__(self, array: np.ndarray, dtype_name: str | None = None, log: list | None = None):
        self._array = array
        self.dtype = SimpleNamespace(name=dtype_name or array.dtype.name)
        self.shape = list(array.shape)
        self.log = log if log is not None else []

    @property
    def __array_interface__(self):  # what CTranslate2 raises for a CUDA storage
        raise AttributeError("Cannot get __array_interface__ when the StorageView is on a CUDA device")

    def to_device(self, device):
        self.log.append(("to_device", device))
        assert device == ctranslate2.Device.cpu
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(self._array))

    def to(self, dtype):
        self.log.append(("to", dtype))
        assert dtype == ctranslate2.DataType.float32
        return CudaStorageStandIn(self._array.astype(np.float32), log=self.log)


def test_plain_asarray_fails_on_a_cuda_encoder_output():
    """The bug this guards against: np.asarray on a CUDA StorageView is a TypeError."""
    with pytest.raises((TypeError, ValueError)):
        np.asarray(CudaStorageStandIn(np.zeros((1, 4, 3), np.float16)), dtype=np.float32)


def test_encoder_output_to_host_moves_cuda_outputs_to_the_cpu():
    from fdrl_core.speech_frontend import encoder_output_to_host

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 1500, 384)).astype(np.float16)
    log: list = []
    out = encoder_output_to_host(CudaStorageStandIn(ref, log=log))
    assert out.dtype == np.float32 and out.shape == (1, 1500, 384)
    np.testing.assert_array_equal(out, ref.astype(np.float32))
    assert log == [("to_device", ctranslate2.Device.cpu)]
    # bfloat16 (compute_type bfloat16) has no numpy type: converted on the device first, then copied
    log.clear()
    out = encoder_output_to_host(CudaStorageStandIn(ref.astype(np.float32), dtype_name="bfloat16", log=log))
    assert [step for step, _ in log] == ["to", "to_device"] and out.dtype == np.float32
    # CPU storages and arrays pass straight through
    cpu = ctranslate2.StorageView.from_array(ref.astype(np.float32))
    np.testing.assert_array_equal(encoder_output_to_host(cpu), ref.astype(np.float32))
    assert encoder_output_to_host(ref).dtype == np.float32


class _FakeWhisper:
    """Just enough of faster_whisper.WhisperModel on a GPU: encode() leaves its output on the device."""

    def __init__(self):
        self.feature_extractor = lambda audio: np.zeros((80, max(1, len(audio) // 160)), np.float32)
        self.feature_extractor.nb_max_frames = 3000
        self.calls = 0

    def encode(self, features):
        self.calls += 1
        rng = np.random.default_rng(self.calls)
        return CudaStorageStandIn(rng.standard_normal((len(features), 1500, 384)).astype(np.float16))


def test_speech_frontend_frames_from_a_gpu_whisper():
    """SpeechFrontend end to end on a GPU-resident encoder output: the probe, frames() and frames_batch()."""
    from fdrl_core.speech_frontend import SpeechFrontend

    fe = SpeechFrontend(whisper=_FakeWhisper(), compute_type="float16")
    assert fe.dim == 384
    frames = fe.frames(np.zeros(16000, np.float32))  # 1 s -> 50 frames
    assert frames.shape == (50, 384) and frames.dtype == np.float32
    enc = fe.encode(np.zeros(8000, np.float32))
    shared = fe.frames(encoder_output=enc, num_samples=8000)  # the recogniser's shared pass
    assert shared.shape == (25, 384)
    batch = fe.frames_batch([np.zeros(3200, np.float32), np.zeros(32000, np.float32)])
    assert [b.shape for b in batch] == [(10, 384), (100, 384)]


def _cuda_devices() -> int:
    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a CUDA driver that fails to load counts as none
        return 0


@pytest.mark.gpu
def test_whisper_on_cuda_gives_frames_and_text():
    """The real CUDA path: one encoder pass on the GPU (float16), decoded there, frames copied to the host.
    Uses the bundled demo's second utterance, so it needs no synthesizer on the GPU machine."""
    if _cuda_devices() == 0:
        pytest.skip("CTranslate2 sees no CUDA device (CPU-only wheel or no GPU): the CUDA ASR path needs one")
    from bench.gpu import load_utterances
    from stream.asr import AsrConfig, Recognizer
    from stream.sources import DEMO_WAV

    pieces, _ = load_utterances(DEMO_WAV, None)
    audio = pieces[1]  # "I just got the job, this is the best day of my life!"
    gpu = Recognizer(AsrConfig(device="cuda", compute_type="float16"))
    cpu = Recognizer(AsrConfig(device="cpu", compute_type="int8"))
    hyp_gpu, hyp_cpu = gpu.transcribe(audio), cpu.transcribe(audio)
    assert hyp_gpu.frames.shape == hyp_cpu.frames.shape and hyp_gpu.frames.dtype == np.float32
    assert np.isfinite(hyp_gpu.frames).all()
    a, b = hyp_gpu.frames.ravel(), hyp_cpu.frames.ravel()
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.9  # fp16 GPU vs int8 CPU: same features
    assert "job" in hyp_gpu.text.lower() and "my life" in hyp_gpu.text.lower()


# ----------------------------------------------------------------------------------------- python -m bench gpu


def _bench(argv, cwd, monkeypatch):
    from bench.__main__ import main

    monkeypatch.chdir(cwd)
    return main(["gpu", *argv])


def test_bench_gpu_help_and_usage_errors(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _bench(["--help"], tmp_path, monkeypatch)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Exit status" in out and "--budget-s" in out and "onnxruntime CUDA" in out
    for bad, says in ((["--runs", "0"], "--runs"), (["--skip", "nope"], "unknown stage"),
                      (["--audio", str(tmp_path / "missing.wav")], "no such file"),
                      (["--model", str(tmp_path)], "not a model folder")):
        assert _bench(bad, tmp_path, monkeypatch) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err


def _no_gpu_probe():
    from bench.gpu import GpuProbe

    return GpuProbe(ct2_version="4.8.5", ct2_cuda_devices=0, ort_version="1.32.0",
                    ort_providers=["CPUExecutionProvider"])


def test_bench_gpu_without_a_gpu_skips_every_stage_and_writes_the_report(tmp_path, monkeypatch, capsys):
    import bench.gpu

    monkeypatch.setattr(bench.gpu, "probe", _no_gpu_probe)
    assert _bench([], tmp_path, monkeypatch) == 2
    out = capsys.readouterr().out
    assert "nothing was measured" in out
    results = tmp_path / "bench-results"  # where the user ran it, not the installed package
    report = json.loads((results / "gpu-latest.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert set(stages) == {"asr (CTranslate2 CUDA)", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt"}
    assert all(s["status"] == "skipped" and s["reason"] for s in stages.values())
    assert "sees no CUDA device" in stages["asr (CTranslate2 CUDA)"]["reason"]
    assert "onnxruntime-gpu" in stages["onnxruntime-cuda"]["reason"]
    assert "TensorRT is not installed" in stages["tensorrt"]["reason"]
    assert report["setup"]["utterances"] == 8 and report["machine"]["cpu"]
    md = (results / "gpu-latest.md").read_text()
    assert "| onnxruntime-cuda | skipped |" in md
    assert list(results.glob("gpu-2*.json")) and list(results.glob("gpu-2*.md"))


def test_tensorrt_provider_listed_without_tensorrt_is_a_skip_not_a_failure():
    """onnxruntime-gpu lists TensorrtExecutionProvider whether or not TensorRT is installed; without
    libnvinfer the stage is skipped with the reason instead of failing the whole GPU proof."""
    from bench.gpu import GpuProbe

    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert "libnvinfer" in GpuProbe(ort_providers=listed).skip_reason("onnxruntime-tensorrt")
    assert GpuProbe(ort_providers=listed, nvinfer="libnvinfer.so.10").skip_reason("onnxruntime-tensorrt") is None
    assert GpuProbe(ort_providers=listed).skip_reason("onnxruntime-cuda") is None


def _result(label, probs):
    from stream.backends import EmotionResult

    return EmotionResult(label, probs, max(probs.values()), ("speech", "text"))


def test_gpu_vs_cpu_comparison_math():
    from bench.gpu import compare_predictions, comparison_ok, cosine, throughput, word_error_rate

    cpu = [_result("happy", {"happy": 0.9, "sad": 0.1}), _result("sad", {"happy": 0.2, "sad": 0.8})]
    close = [_result("happy", {"happy": 0.895, "sad": 0.105}), _result("sad", {"happy": 0.2, "sad": 0.8})]
    cmp = compare_predictions(cpu, close)
    assert cmp["labels_equal"] and cmp["label_mismatches"] == [] and cmp["max_prob_diff"] == pytest.approx(0.005)
    assert comparison_ok(cmp, 1e-2) and not comparison_ok(cmp, 1e-3)
    flipped = [close[0], _result("happy", {"happy": 0.55, "sad": 0.45})]
    cmp = compare_predictions(cpu, flipped)
    assert not cmp["labels_equal"] and cmp["label_mismatches"] == [1] and not comparison_ok(cmp, 1.0)
    with pytest.raises(ValueError):
        compare_predictions(cpu, cpu[:1])
    assert word_error_rate("The meeting is at three.", "the meeting is at three") == 0
    assert word_error_rate("a b c d", "a x c") == pytest.approx(0.5)
    assert word_error_rate("", "") == 0 and word_error_rate("", "hello") == 1
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert cosine(a, a) == pytest.approx(1.0) and np.isnan(cosine(a, a[:2]))
    assert throughput({"median": 20.0}, 8) == 400.0 and throughput({"median": None}, 1) is None


def test_device_memory_from_nvml_or_nvidia_smi():
    from bench.gpu import DeviceMemory, probe

    class FakeNvml:
        def nvmlDeviceGetHandleByIndex(self, i):
            return "h0"

        def nvmlDeviceGetName(self, h):
            return b"NVIDIA H200"

        def nvmlDeviceGetMemoryInfo(self, h):
            return SimpleNamespace(total=141 * 2**30, used=3 * 2**30)

        def nvmlSystemGetDriverVersion(self):
            return "580.159.03"

        def nvmlDeviceGetComputeRunningProcesses(self, h):
            return [SimpleNamespace(pid=1, usedGpuMemory=None), SimpleNamespace(pid=os.getpid(), usedGpuMemory=2**29)]

    mem = DeviceMemory(nvml=FakeNvml())
    assert mem.source == "nvml"
    assert mem.device() == {"name": "NVIDIA H200", "driver": "580.159.03", "total_mb": 141 * 1024, "used_mb": 3072}
    assert mem.process_mb() == 512

    calls = []

    def smi(args):
        calls.append(args)
        if args[0].startswith("--query-gpu"):
            return ["NVIDIA A100-SXM4-40GB, 550.54.15, 40960, 1200"]
        return ["123, 300", f"{os.getpid()}, 842"]

    mem = DeviceMemory(smi=smi, nvml=False)
    assert mem.device()["name"] == "NVIDIA A100-SXM4-40GB" and mem.source == "nvidia-smi"
    assert mem.process_mb() == 842
    snap = mem.snapshot("after ASR")
    assert snap == {"stage": "after ASR", "device_used_mb": 1200.0, "process_mb": 842.0}
    nothing = DeviceMemory(smi=lambda args: None, nvml=False)
    assert nothing.device() is None and "no NVIDIA GPU" in nothing.error
    found = probe(smi=smi, nvml=False)
    assert found.gpu_name == "NVIDIA A100-SXM4-40GB" and found.any_gpu


def test_exit_codes_and_markdown_of_a_measured_report():
    from bench.gpu import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Report, exit_code, markdown
    from bench.machine import describe

    found = {"gpu_name": "NVIDIA H200", "ct2_cuda_devices": 1, "ort_providers": ["CUDAExecutionProvider"]}
    rep = Report(describe(), found,
                 {"started": 0, "model": "demo", "audio": "demo.wav", "utterances": 8, "runs": 20, "warmup": 3})
    st = rep.stage("onnxruntime-cuda")
    st.status = "ok"
    st.metrics = {"latency_ms": {"batch 1": {"median": 2.5, "p95": 3.0, "mean": 2.6, "n": 20}},
                  "throughput": {"batch 1": 400.0},
                  "vs_cpu": {"items": 8, "labels_equal": True, "label_mismatches": [], "max_prob_diff": 3e-5}}
    rep.memory.append({"stage": "onnxruntime-cuda", "device_used_mb": 900.0, "process_mb": 512.0})
    assert exit_code(rep, any_gpu=True) == EXIT_OK
    md = markdown(rep)
    assert "| onnxruntime-cuda | ok | batch 1 median 2.5 ms; labels equal: True, max |dprob| 3.0e-05 |" in md
    assert "| batch 1 | 2.5 | 3.0 | 2.6 | 20 | 400.0 |" in md and "| onnxruntime-cuda | 900.0 | 512.0 |" in md
    rep.stage("tensorrt").status = "failed"
    assert exit_code(rep, any_gpu=True) == EXIT_FAILED
    assert exit_code(Report(describe(), {}, {"started": 0}), any_gpu=False) == EXIT_USAGE


def test_demo_utterances_come_with_their_reference_text():
    from bench.gpu import load_utterances
    from stream.sources import DEMO_WAV

    pieces, texts = load_utterances(DEMO_WAV, None)
    assert len(pieces) == len(texts) == 8 and all(len(p) > 16000 for p in pieces)
    assert "three o'clock" in texts[0]


@pytest.mark.gpu
def test_bench_gpu_end_to_end_on_a_gpu(tmp_path, monkeypatch, capsys):
    """The real command on a GPU machine: every stage that the machine supports runs and matches the CPU."""
    from bench.gpu import probe

    found = probe()
    if not found.any_gpu:
        pytest.skip("no CUDA GPU here (" + (found.skip_reason("asr") or "") + ")")
    code = _bench(["--runs", "5", "--warmup", "1", "--out", str(tmp_path / "r")], tmp_path, monkeypatch)
    capsys.readouterr()
    report = json.loads((tmp_path / "r" / "gpu-latest.json").read_text())
    failed = [(s["name"], s["reason"]) for s in report["stages"] if s["status"] == "failed"]
    assert code == 0 and not failed, failed
    assert any(s["status"] == "ok" for s in report["stages"])


def test_emotion_stage_logic_with_cpu_stand_ins(tmp_path, monkeypatch):
    """run_emotion end to end on the bundled model, the 'GPU' providers swapped for the CPU one: the
    comparison, timing and memory bookkeeping run as on a GPU; a provider onnxruntime silently drops
    (CUDA asked for, CPU given) is a failed stage, never a CPU number labelled GPU."""
    import bench.gpu as g
    from fdrl_core.assets import demo_model_dir

    monkeypatch.setenv("FDRL_ONNX_CACHE", str(tmp_path / "cache"))
    found = g.GpuProbe(gpu_name="stand-in", ct2_cuda_devices=0, ort_version="x", nvinfer="libnvinfer.so.10",
                       ort_providers=["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(g, "emotion_candidates", lambda out, shapes: [
        ("onnxruntime-cuda", ["CPUExecutionProvider"]),  # stand-in for CUDA: same numbers as the reference
        ("onnxruntime-tensorrt", ["CUDAExecutionProvider", "CPUExecutionProvider"]),  # not there: falls back
    ])
    rep = g.Report({}, {}, {"started": 0})
    args = SimpleNamespace(out=tmp_path, runs=2, warmup=0, skip="", engine=None, no_engine_build=True)
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((n, 384)).astype(np.float32) for n in (150, 60, 300)]
    texts = ["I am so happy to see you", "", "leave me alone"]
    memory = g.DeviceMemory(smi=lambda a: None, nvml=False)
    g.run_emotion(rep, args, found, demo_model_dir() / "onnx", frames, texts, memory, deadline=0)
    stages = {s.name: s for s in rep.stages}
    ok = stages["onnxruntime-cuda"]
    assert ok.status == "ok" and ok.metrics["vs_cpu"]["labels_equal"] and ok.metrics["vs_cpu"]["max_prob_diff"] < 1e-6
    assert set(ok.metrics["latency_ms"]) == {"batch 1", "batch 8"} and ok.metrics["throughput"]["batch 8"] > 0
    dropped = stages["onnxruntime-tensorrt"]
    assert dropped.status == "failed"
    assert "did not take" in dropped.reason
    assert stages["tensorrt"].status == "skipped" and "TensorRT is not installed" in stages["tensorrt"].reason
    assert g.exit_code(rep, any_gpu=True) == g.EXIT_FAILED
