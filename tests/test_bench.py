"""The benchmarks as a user runs them: `python -m bench pipeline` on a short spoken file with a tiny random
checkpoint writes the JSON and markdown the README is built from; bad input is one line; the GPU path is
chosen and labelled from what the libraries report. No timing thresholds: numbers depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.test_stream_support import REPO, clean_env, have_espeak, make_checkpoint, make_spoken_file

needs_espeak = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "fdrl")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    return make_spoken_file(tmp_path_factory.mktemp("audio") / "one.wav", sentences=("I am so happy to see you again",),
                            gap_s=1.0)


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)


@needs_espeak
def test_pipeline_writes_results_with_machine_latency_baseline_and_startup(tmp_path, spoken, ckpt):
    out = tmp_path / "results"
    res = bench("pipeline", "--audio", str(spoken), "--model", str(ckpt), "--out", str(out), "--passes", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    js = sorted(out.glob("pipeline-2*.json"))
    mds = sorted(out.glob("pipeline-2*.md"))
    assert len(js) == 1 and len(mds) == 1
    assert (out / "pipeline-latest.json").read_text() == js[0].read_text()
    rep = json.loads(js[0].read_text())

    m = rep["machine"]
    assert m["cpu"] and m["usable_cpus"] >= 1 and m["ram_gb"] > 0
    assert len(m["load_average_start"]) == 3 and len(m["load_average_end"]) == 3
    for lib in ("torch", "ctranslate2", "onnxruntime", "faster-whisper"):
        assert m["versions"][lib], lib
    assert m["hardware_path"]["label"].startswith(("CPU", "GPU"))

    ours, base = rep["realtime"]["ours"], rep["realtime"]["baseline"]
    for r in (ours, base):
        assert r["utterances"] == 1
        lat = r["latency_ms"]["eos_to_emotion"]
        assert lat["median"] > 0 and lat["p95"] >= lat["median"]
        assert r["cpu_s_per_audio_s"] > 0 and r["processing_rtf"] > 0
        assert r["dropped_audio_frames"] == 0
        assert "happy" in r["per_utterance"][0]["transcript"].lower()
    # the split a user reads: ASR (encoder, decode), text encoder, FDRL, publish
    for stage in ("encoder", "decode", "text_encoder", "fdrl", "publish"):
        assert ours["stages_ms"][stage]["median"] is not None, stage
    for stage in ("asr", "second_encoder", "text_encoder", "fdrl"):
        assert base["stages_ms"][stage]["median"] is not None, stage

    assert rep["ratios"]["latency_speedup"] > 0 and rep["ratios"]["compute_cpu_ours_over_baseline"] > 0
    off = rep["offline"]["variants"]
    assert set(off) == {"ours", "separate", "baseline", "baseline_1thread"}
    assert off["separate"]["second_encoder"]["cpu_ms"]["median"] > 0
    assert -1 < rep["shared_encoder"]["saving_cpu"] < 1
    assert rep["startup"]["startup_s"] > 0 and rep["startup"]["peak_rss_mb"] > 0
    assert rep["startup"]["cli"]["streams"][0]["returncode"] == 0
    assert {t["name"] for t in rep["targets"]} >= {"end of speech -> final emotion, median",
                                                    "faster than the naive baseline (latency median)"}

    md = mds[0].read_text()
    for heading in ("## Latency", "## Targets", "## Where the time goes", "## Sharing the Whisper encoder pass",
                    "## Start-up and memory"):
        assert heading in md
    assert "naive baseline" in md and "Machine:" in md and "Load average" in md
    assert f"Reproduce: `python -m bench pipeline --audio {spoken}" in md
    assert "| ours |" in res.stdout  # the table is printed too


def test_bad_audio_is_one_clean_line(tmp_path):
    res = bench("pipeline", "--audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path), timeout=120)
    assert res.returncode == 2  # an input error (fdrl_core.cli convention)
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr
    assert lines[-1].startswith("bench pipeline:") and "missing.wav" in lines[-1]
    assert not list(tmp_path.glob("pipeline-*.json"))


def test_help_lists_every_benchmark():
    res = bench("--help", timeout=120)
    assert res.returncode == 0
    for name in ("backends", "pipeline", "scaling", "all"):
        assert name in res.stdout


def test_gpu_path_is_chosen_and_labelled_from_what_the_libraries_see():
    from bench.machine import hardware_path
    from bench.streams import stream_command

    gpu = {"ct2_cuda_devices": 1, "torch_cuda": False, "ort_cuda": False, "tensorrt": "10.3.0",
           "gpu_name": "Orin (nvgpu)"}
    hw = hardware_path("auto", probe=lambda: gpu)
    assert hw.gpu and hw.asr_device == "cuda" and hw.asr_compute_type == "float16" and hw.emotion_device == "cuda"
    assert hw.label.startswith("GPU Orin") and "TensorRT" in hw.label
    cmd = stream_command(REPO / "x.wav", "tcp://127.0.0.1:1", "s", None, "auto", hw)
    assert cmd[cmd.index("--asr-device") + 1] == "cuda" and cmd[cmd.index("--emotion-device") + 1] == "cuda"

    none = {"ct2_cuda_devices": 0, "torch_cuda": False, "ort_cuda": False, "tensorrt": None, "gpu_name": None}
    cpu = hardware_path("auto", probe=lambda: none)
    assert not cpu.gpu and cpu.asr_device == "cpu" and cpu.label.startswith("CPU (no GPU found")
    with pytest.raises(ValueError, match="no GPU"):
        hardware_path("cuda", probe=lambda: none)
    assert hardware_path("cpu", probe=lambda: gpu).asr_device == "cpu"  # forced CPU on a GPU machine


@needs_espeak
def test_scaling_utterances_stay_one_utterance_each(spoken):
    """The length sweep joins speech pieces; the run-time's VAD must see each built utterance as one."""
    from dataclasses import replace

    from bench.scaling import build_utterance, speech_pieces, write_length_file
    from fdrl_core.audio import load_audio, to_int16
    from stream.vad import Segmenter, SpeechEnd, VadConfig

    vad = VadConfig()
    pieces = speech_pieces(load_audio(spoken), vad)
    assert len(pieces) == 1
    utts = [build_utterance(pieces, s) for s in (1.0, 8.0)]
    assert [len(u) for u in utts] == [16000, 128000]
    path = write_length_file(spoken.parent / "lengths.wav", utts)
    seg = Segmenter(replace(vad, max_utterance_s=10.0), grow_every_ms=None)
    pcm = to_int16(load_audio(path))
    ends = []
    for i in range(0, len(pcm) - seg.fs + 1, seg.fs):
        ends += [e for e in seg.push(pcm[i:i + seg.fs], i) if isinstance(e, SpeechEnd)]
    ends += [e for e in seg.flush() if isinstance(e, SpeechEnd)]
    assert len(ends) == 2
    assert np.allclose([len(e.audio) / 16000 for e in ends], [1.0, 8.0], atol=0.7)


@pytest.mark.slow
@needs_espeak
def test_scaling_writes_results_and_plot(tmp_path, spoken, ckpt):
    out = tmp_path / "results"
    res = bench("scaling", "--audio", str(spoken), "--model", str(ckpt), "--out", str(out), "--lengths", "1,3",
                "--per-length", "1", "--streams", "1,2", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads((out / "scaling-latest.json").read_text())
    assert [r["speech_s"] for r in rep["lengths"]] == [1.0, 3.0]
    assert all(r["utterances"] == 1 and r["eos_to_emotion_ms"]["median"] > 0 for r in rep["lengths"])
    assert [r["n"] for r in rep["streams"]] == [1, 2]
    assert all(r["all_ok"] and r["dropped_audio_frames"] is not None for r in rep["streams"])
    assert rep["targets"][0]["name"] == "two concurrent real-time streams without dropped audio"
    png = out / "scaling-latest.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Concurrent streams" in (out / "scaling-latest.md").read_text()
