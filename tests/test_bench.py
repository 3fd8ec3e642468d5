"""The benchmarks as a user runs them: `python -m bench pipeline` on a short spoken file with a tiny random
checkpoint writes the JSON and markdown the README is built from; bad input is one line; the GPU path is
chosen and labelled from what the libraries report. No timing thresholds: numbers depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.test_stream_support import REPO, clean_env, have_espeak, make_spoken_file

needs_espeak = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (scripts/setup.sh)")


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
        lat = r["latency_ms"]["speech_end_to_emotion"]  # from the last voiced audio (ours may beat the hangover)
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


def test_bad_out_and_stream_counts_are_refused_before_measuring(tmp_path):
    """`--out` where nothing can be written failed only after minutes of measuring; `--streams 0` after
    loading the models, as a run-time failure."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args, why in ((("windows", "--out", str(blocker)), "exists and is not a folder"),
                      (("multistream", "--streams", "0", "--out", str(tmp_path)), "--streams")):
        res = bench(*args, timeout=120)
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and why in lines[0], res.stderr


def test_help_lists_every_benchmark():
    res = bench("--help", timeout=120)
    assert res.returncode == 0
    for name in ("headline", "peers", "backends", "pipeline", "scaling", "all"):
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
    # measured from the last voiced audio: finals go out at the pause, before the VAD's end-of-speech decision
    assert all(r["utterances"] == 1 and r["speech_end_to_emotion_ms"]["median"] > 0 for r in rep["lengths"])
    assert [r["n"] for r in rep["streams"]] == [1, 2]
    assert all(r["all_ok"] and r["dropped_audio_frames"] is not None for r in rep["streams"])
    assert rep["targets"][0]["name"] == "two concurrent real-time streams without dropped audio"
    png = out / "scaling-latest.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Concurrent streams" in (out / "scaling-latest.md").read_text()


# ------------------------------------------------------------------------------------------ headline and peers
# CPU-side logic of the true-end-of-speech measurement, with fake pipelines, events and peers: no timing
# thresholds, only what a user reads off the report.


def _tone(voiced_s: float, pad_s: float = 0.2, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(voiced_s * sr)) / sr
    pad = np.zeros(int(pad_s * sr), np.float32)
    return np.concatenate([pad, (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), pad])


def test_true_utterance_times_come_from_the_voiced_part_of_each_clip():
    from bench.truth import compose, voiced_bounds

    x = _tone(1.0, pad_s=0.25)
    first, last = voiced_bounds(x)
    assert abs(first - 4000) <= 1 and abs(last - 20000) <= 1  # the TTS padding is not speech
    assert voiced_bounds(np.zeros(16000, np.float32)) is None

    audio, utts = compose([("one two", "espeak-ng:en", _tone(1.0)), ("three four", "festival:kal", _tone(0.5))],
                          gaps_s=[2.0, 9.9], lead_s=1.0, tail_s=3.0)
    assert [u.text for u in utts] == ["one two", "three four"]
    assert abs(utts[0].start_s - 1.0) < 1e-3 and abs(utts[0].end_s - 2.0) < 1e-3
    assert abs(utts[1].start_s - 4.0) < 1e-3 and abs(utts[1].end_s - 4.5) < 1e-3  # gap after clip 0: 2 s
    assert abs(len(audio) / 16000 - 7.5) < 1e-3  # the last gap is the tail
    # the audio really is silent after each true end and voiced just before it
    for u in utts:
        end = round(u.end_s * 16000)
        assert np.abs(audio[end:end + 1600]).max() == 0 and np.abs(audio[end - 160:end]).max() > 0.1


@needs_espeak
def test_generated_stream_is_cached_and_its_true_ends_are_silent_after(tmp_path):
    from bench.truth import StreamRecipe, generate_stream
    from fdrl_core.audio import load_audio

    recipe = StreamRecipe(voices=(("espeak-ng", "en-us"), ("espeak-ng", "en")))
    s = generate_stream(tmp_path, recipe, n=2)
    assert len(s.utterances) == 2 and s.path.is_file()
    audio = load_audio(s.path)
    assert abs(len(audio) / 16000 - s.duration_s) < 0.01
    for u in s.utterances:
        assert 0 < u.start_s < u.end_s < s.duration_s
        end = round(u.end_s * 16000)
        assert np.abs(audio[end + 16:end + 8000]).max() < 1e-3  # 16-bit rounding aside: silence after the end
    again = generate_stream(tmp_path, recipe, n=2)
    assert again.to_json() == s.to_json() and len(list(tmp_path.glob("truth-*.wav"))) == 1


def _utts():
    from bench.truth import TrueUtterance

    return [TrueUtterance(0, "I am so happy to see you", "x", 1.0, 2.0),
            TrueUtterance(1, "the weather is terrible today", "x", 5.0, 6.5),
            TrueUtterance(2, "please close the kitchen door", "x", 9.0, 10.0)]


def test_observer_events_measure_from_the_true_end_to_the_final_message():
    """A fake pipeline emits the public events; the measurement uses the source's audio clock origin."""
    from bench.measure import EventLog, match, summarize
    from stream.events import Observers

    log = EventLog()
    obs = Observers([log])
    obs.emit("source_start", "s", t=100.03, audio_t=0.03, live=True, sample_rate=16000)  # origin 100.0

    def final(uid, t, start, end, text, label="happy"):
        msg = {"stream_id": "s", "utterance_id": uid, "partial": False, "start": start, "end": end,
               "transcript": text, "label": label}
        obs.emit("published", "s", utterance_id=uid, t=t, topic="emotion", partial=False, revision=1, message=msg)

    def partial(uid, t, start, end, text):
        msg = {"utterance_id": uid, "partial": True, "start": start, "end": end, "text": text}
        obs.emit("published", "s", utterance_id=uid, t=t, topic="transcript", partial=True, revision=1, message=msg)

    partial(0, 101.6, 0.7, 1.6, "I am")
    final(0, 102.4, 0.7, 2.24, "I am so happy to see you")
    partial(1, 105.9, 4.7, 5.9, "the weather")
    final(1, 107.1, 4.7, 6.74, "the weather is terrible today", "sad")
    # utterance 2 never gets a final
    assert abs(log.origin("s") - 100.0) < 1e-9
    res = match(_utts(), log.said("s"), log.origin("s"))
    assert [r.final_ms for r in res] == [400.0, 600.0, None]
    assert [r.first_partial_ms for r in res] == [600.0, 900.0, None]
    assert res[1].label == "sad" and not res[0].merged
    s = summarize(res, cpu_s=3.0, audio_s=12.0)
    assert s["finals"] == 2 and s["missed"] == 1 and s["final_ms"]["median"] == 500.0
    assert s["cpu_s_per_audio_min"] == 15.0


def test_peer_text_finals_are_matched_by_words_including_a_merged_one():
    from bench.measure import Said, match

    origin = 50.0
    said = [Said(51.5, False, "I am"), Said(53.0, True, "I am so happy to see you."),
            # a final that merged utterances 1 and 2 arrives after both ended
            Said(61.0, True, "The weather is terrible today. Please close the kitchen door.")]
    res = match(_utts(), said, origin)
    assert [r.final_ms for r in res] == [1000.0, 4500.0, 1000.0]
    assert [r.merged for r in res] == [False, True, True]
    assert res[0].first_partial_ms == 500.0

    # LocalAgreement peers commit pieces with audio spans: final when the last piece of the utterance arrived
    pieces = [Said(52.5, True, "I am so", 1.0, 1.4), Said(53.5, True, "happy to see you", 1.4, 2.0),
              Said(57.0, True, "the weather is terrible today", 5.0, 6.4)]
    res = match(_utts(), pieces, origin, finals="last")
    assert [r.final_ms for r in res] == [1500.0, 500.0, None]
    assert res[0].final_text == "I am so happy to see you" and res[0].first_partial_ms == 1500.0


def test_an_early_final_at_a_pause_inside_the_sentence_does_not_end_the_utterance():
    from bench.measure import Said, match

    origin = 50.0
    said = [Said(55.9, True, "the weather", 4.9, 5.7, "sad"),  # early final at a pause after "weather"
            Said(56.9, True, "the weather is terrible today", 4.9, 6.6, "sad")]  # the revision
    res = match(_utts(), said, origin)
    assert res[1].final_ms == 400.0 and res[1].final_text == "the weather is terrible today"


def test_pass_recorder_builds_utterance_records_from_events_including_speculative_and_early_finals():
    from bench.instrument import PassRecorder
    from stream.events import Observers

    rec = PassRecorder(None, audio=np.arange(16000 * 8, dtype=np.int16))
    obs = Observers([rec])
    obs.emit("source_start", "s", t=10.03, audio_t=0.03)

    def final(uid, t, start, end, text):
        msg = {"partial": False, "start": start, "end": end, "transcript": text, "label": "neutral"}
        obs.emit("published", "s", utterance_id=uid, t=t, topic="transcript", partial=False, message={})
        obs.emit("published", "s", utterance_id=uid, t=t + 0.01, topic="emotion", partial=False, message=msg)

    # utterance 0: the speculative pass ran during the hangover and is published once the VAD decided
    obs.emit("speech_start", "s", utterance_id=0, t=10.9, audio_t=0.9)
    obs.emit("pass_start", "s", utterance_id=0, t=12.0, audio_t=2.5, final=True, speculative=True, samples=28800)
    obs.emit("speech_end", "s", utterance_id=0, t=12.2, audio_t=2.1, reason="silence")
    obs.emit("pass_end", "s", utterance_id=0, t=12.5, audio_t=2.5, final=True, speculative=True, asr_ms=450.0,
             emotion_ms=30.0)
    final(0, 12.51, 0.7, 2.5, "hello there")
    # utterance 1: an early final, published before the VAD's decision
    obs.emit("pass_start", "s", utterance_id=1, t=15.0, audio_t=5.5, final=True, speculative=True, samples=16000)
    obs.emit("pass_end", "s", utterance_id=1, t=15.3, audio_t=5.5, final=True, speculative=True, asr_ms=280.0,
             emotion_ms=20.0)
    final(1, 15.31, 4.5, 5.5, "good bye")
    assert len(rec.records) == 1  # no decision yet for utterance 1
    obs.emit("speech_end", "s", utterance_id=1, t=15.6, audio_t=5.2, reason="silence")
    final(1, 16.0, 4.5, 5.5, "good bye now")  # a revision: the record keeps the first final
    assert len(rec.records) == 2

    r = rec.records[0]
    assert r.speculative and r.reason == "silence" and r.transcript == "hello there"
    assert abs(r.t_speech_end - 12.1) < 1e-9 and r.t_decided == 12.2 and r.t_sent == 12.52
    assert r.final_pass.start == 12.0 and r.final_pass.end == 12.5
    assert r.final_pass.costs["asr"].wall_ms == 450.0 and len(r.audio) == int(1.8 * 16000)
    row = r.row()
    assert row["speculative_rest_ms"] == 300.0 and abs(row["speech_end_to_emotion_ms"] - 420.0) < 0.01
    early = rec.records[1]
    assert early.transcript == "good bye" and early.speculative
    assert early.row()["eos_to_emotion_ms"] < 0  # the final was there before the VAD decided


MACHINE = {"cpu": "test cpu", "usable_cpus": 2, "physical_cores": 2, "ram_gb": 1.0, "platform": "x", "versions": {},
           "load_average_start": [0, 0, 0], "load_average_end": [0, 0, 0]}


def _headline_summary(final_med, cpu):
    from bench.measure import UtteranceResult, summarize

    res = [UtteranceResult(0, "a b", 1.0, 2.0, final_ms=final_med, first_partial_ms=500.0, final_text="a b"),
           UtteranceResult(1, "c d", 5.0, 6.0, final_ms=final_med, first_partial_ms=700.0, final_text="c d")]
    s = summarize(res, cpu_s=cpu, audio_s=60.0)
    s["where_the_time_goes"] = {k: {"median": 1.0, "p95": 2.0} for k in (
        "true_end_to_voice_end_ms", "true_end_to_pause_ms", "pause_to_published_ms", "published_to_received_ms",
        "true_end_to_vad_decision_ms")}
    s["final_text_ms"] = {"median": final_med, "p95": final_med}
    return s


def test_headline_report_has_ratios_targets_and_is_written_outside_the_package(tmp_path):
    from types import SimpleNamespace

    from bench.common import DEFAULT_OUT, write_results
    from bench.headline import build_report, markdown
    from bench.truth import GeneratedStream, TrueUtterance

    assert not DEFAULT_OUT.is_absolute()  # ./bench-results in the working directory, not bench/
    stream = GeneratedStream(tmp_path / "t.wav", 10.0, [TrueUtterance(0, "a b", "espeak-ng:en", 1.0, 2.0)])
    machine = MACHINE
    setup = {"asr_model": "tiny", "compute_type": "int8", "asr_device": "cpu", "emotion": "e", "vad_hangover_ms": 600,
             "partial_every_s": 0.7, "speculative": True}
    rep = build_report(SimpleNamespace(), machine, stream, setup, {"x": 1}, _headline_summary(300.0, 10.0),
                       _headline_summary(1200.0, 5.0), [], 0.0)
    assert rep["ratios"]["final_median_baseline_over_ours"] == 4.0
    assert rep["ratios"]["cpu_per_audio_min_baseline_over_ours"] == 0.5
    assert [t["met"] for t in rep["targets"]] == [True, True, True]
    md = markdown(rep)
    assert "| this project | 300 | 300 | 600 | 10.0 | 2 / 2 | 0 | 0 |" in md
    assert "final median 4.00x" in md and "## Targets" in md
    js, mdp = write_results(tmp_path / "out", "headline", 0.0, rep, md)
    assert json.loads(js.read_text())["ratios"]["final_median_baseline_over_ours"] == 4.0
    assert (tmp_path / "out" / "headline-latest.md").read_text() == md


def _fake_driver(tmp_path, body: str):
    from bench.peers import DRIVERS

    d = tmp_path / "drivers"
    d.mkdir(exist_ok=True)
    (d / "_protocol.py").write_text((DRIVERS / "_protocol.py").read_text())
    p = d / "fake_driver.py"
    p.write_text("from _protocol import emit, run\n\ndef main(job):\n" + body + "\n\nrun(main)\n")
    return p


def test_peer_runner_reports_why_a_peer_cannot_run(tmp_path):
    from bench.peers import PEERS, CannotRun, install, run_driver

    # the driver reports the peer's own failure
    dr = run_driver(sys.executable, _fake_driver(tmp_path, "    raise ImportError('No module named RealtimeSTT')"),
                    {}, timeout_s=60)
    assert dr.error == "ImportError: No module named RealtimeSTT"
    # a crash without an event: exit code and the last stderr line
    crash = _fake_driver(tmp_path, "    import os, sys\n    print('segfault-ish', file=sys.stderr)\n    os._exit(3)")
    dr = run_driver(sys.executable, crash, {}, timeout_s=60)
    assert dr.error.startswith("driver exited with code 3") and "segfault-ish" in dr.error
    # hangs are cut off
    dr = run_driver(sys.executable, _fake_driver(tmp_path, "    import time\n    time.sleep(30)"), {}, timeout_s=1)
    assert dr.error == "timed out after 1 s"
    assert run_driver(tmp_path / "no-python", crash, {}, 5).error.startswith("no Python at")
    # a peer that is not on the registries this project installs from
    with pytest.raises(CannotRun, match="not on PyPI"):
        install(PEERS["ufal-whisper-streaming"], tmp_path)


def test_peers_cli_reports_uninstalled_and_unavailable_peers_without_a_traceback(tmp_path):
    out = tmp_path / "res"
    res = bench("peers", "--peers", "realtimestt,ufal-whisper-streaming", "--skip-install", "--cache",
                str(tmp_path / "cache"), "--install-only", "--out", str(out), timeout=120)
    assert "Traceback" not in res.stderr
    assert "RealtimeSTT 1.1.2: cannot run: not installed in" in res.stderr
    assert "cannot run: not on PyPI" in res.stderr
    bad = bench("peers", "--peers", "nope", timeout=120)
    assert bad.returncode != 0 and "unknown peer(s) nope" in bad.stderr and "Traceback" not in bad.stderr


def test_a_peer_run_is_measured_from_its_events(tmp_path):
    """A fake peer speaks the driver protocol: its partial and final texts become latencies and CPU."""
    from bench.peers import analyse, build_report, markdown, run_driver
    from bench.truth import GeneratedStream

    body = ("    emit('ready', load_s=0.5)\n    emit('origin', t=50.0)\n"
            "    emit('partial', t=51.4, text='I am so')\n    emit('final', t=52.8, text='I am so happy to see you')\n"
            "    emit('final', t=57.0, text='The weather is terrible today')\n"
            "    emit('done', audio_s=12.0, cpu_s=6.0, fed_late_blocks=0)")
    dr = run_driver(sys.executable, _fake_driver(tmp_path, body), {}, timeout_s=60)
    assert dr.error is None
    stream = GeneratedStream(tmp_path / "t.wav", 12.0, _utts())
    res = analyse(stream, dr)
    assert [u["final_ms"] for u in res["per_utterance"]] == [800.0, 500.0, None]
    # first output about an utterance: a partial, or the final when no partial came (utterance 1)
    assert [u["first_partial_ms"] for u in res["per_utterance"]] == [400.0, 2000.0, None]
    assert res["missed"] == 1 and res["cpu_s_per_audio_min"] == 30.0

    from types import SimpleNamespace

    from bench.peers import PEERS

    ours = _headline_summary(200.0, 10.0)
    status = {"realtimestt": {**res, "status": "ran"},
              "whisperlive": {"status": "cannot run: install failed (pip ...): no space left on device"}}
    machine = MACHINE
    rep = build_report(SimpleNamespace(), machine, stream, [PEERS["realtimestt"], PEERS["whisperlive"]], ours, {},
                       status, [], 0.0, "/m")
    assert rep["peers"]["realtimestt"]["ratio_final_median_peer_over_ours"] == 3.25  # 650 / 200
    assert rep["best_peer"] == "RealtimeSTT 1.1.2" and rep["ratio_best_peer_final_over_ours"] == 3.25
    md = markdown(rep)
    assert "| WhisperLive 0.10.0 | - |" in md and "cannot run: install failed" in md
    assert "| RealtimeSTT 1.1.2 | 650 |" in md


def test_a_peer_that_could_not_be_fed_in_real_time_is_flagged():
    from bench.peers import run_status

    assert run_status(None, 0, 72.0) == "ran"
    assert run_status(None, 50, 72.0) == "ran"  # 50 of 2400 blocks: within 5 %
    late = run_status(None, 1500, 72.0)
    assert late.startswith("ran, but 1500 of 2400 audio blocks were fed late") and "not a real-time result" in late
    assert run_status("IndexError: list index", 0, 72.0) == "ran, then: IndexError: list index"


def test_a_run_that_could_not_keep_up_says_so_in_the_report(tmp_path):
    from types import SimpleNamespace

    from bench.headline import build_report, markdown
    from bench.truth import GeneratedStream, TrueUtterance

    stream = GeneratedStream(tmp_path / "t.wav", 60.0, [TrueUtterance(0, "a b", "espeak-ng:en", 1.0, 2.0)])
    ours, base = _headline_summary(300.0, 10.0), _headline_summary(900.0, 5.0)
    ours["wall_s"], base["wall_s"], base["dropped_audio_frames"] = 61.0, 250.0, 40
    setup = {"asr_model": "tiny", "compute_type": "int8", "asr_device": "cpu", "emotion": "e", "vad_hangover_ms": 600,
             "partial_every_s": 0.7, "speculative": True}
    rep = build_report(SimpleNamespace(), MACHINE, stream, setup, {}, ours, base, [], 0.0)
    assert rep["notes"] == ["naive baseline: 40 audio frames were dropped (it did not keep up with the paced source); "
                            "utterances in them are missed",
                            "naive baseline: took 250 s for 60 s of audio: not a real-time result (overloaded "
                            "machine, or it falls behind)"]
    assert "Notes:" in markdown(rep)
