"""python -m bench multistream: N real-time streams in ONE process (one model), measured from the true end
of speech.

Every stream replays the bundled demo (whose utterance times are known, stream/demo/demo.json) paced like
a microphone; stream i starts `--stagger` seconds after stream i-1 so utterances do not all end at the
same instant (as in a room of microphones). The pipeline's observers (stream.events) give when each stream
started and when each message left, so nothing inside the pipeline is overridden. Per stream count:
true end of speech -> first final emotion (median/p95), first partial after speech start, dropped audio,
CPU seconds per audio minute, resident memory (each count runs in its own process, so memory per added
stream is a difference of like with like), and how often a provisional label published as stable was
contradicted by the final.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

WINDOWS = ("model", "default", "legacy")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bench.common import DEFAULT_OUT

    p.add_argument("--streams", default="1,8", help="stream counts to measure, comma-separated (default: %(default)s)")
    p.add_argument("--stagger", type=float, default=0.37, metavar="S",
                   help="start offset between streams in seconds (default: %(default)s)")
    p.add_argument("--model", default=None, help="FDRL model (default: $FDRL_MODEL, else the demo model)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA/TensorRT when this machine has a GPU, else CPU (default: auto)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                   help="emotion backend (default: auto, as stream.run)")
    p.add_argument("--window", choices=WINDOWS, default="model",
                   help="encoder window: the model's own (default), the default policy or the legacy 30 s; "
                        "anything but 'model' measures speed only (the features then differ from training)")
    p.add_argument("--partial-every", type=float, default=None, metavar="S",
                   help="partial interval (default: the run-time default)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="results folder (default: %(default)s)")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: measure this count, print JSON


def _truth() -> list[dict]:
    """The demo's utterances with their TRUE voiced start/end: demo.json's spans include the synthesiser's
    own padding, so the voice's bounds inside each span are found in the audio (bench.truth.voiced_bounds,
    as for the headline's generated stream)."""
    import soundfile as sf

    from bench.truth import voiced_bounds
    from fdrl_core.audio import SAMPLE_RATE
    from stream.sources import DEMO_WAV

    x, _ = sf.read(str(DEMO_WAV), dtype="float32")
    out = []
    for u in json.loads(Path(DEMO_WAV).with_suffix(".json").read_text())["utterances"]:
        a, b = int(u["start"] * SAMPLE_RATE), int(u["end"] * SAMPLE_RATE)
        bounds = voiced_bounds(x[a:b])
        if bounds is not None:
            u = {**u, "start": (a + bounds[0]) / SAMPLE_RATE, "end": (a + bounds[1]) / SAMPLE_RATE}
        out.append(u)
    return out


def _match(msg: dict, truth: list[dict]) -> dict | None:
    """The spoken utterance a message is about: the one whose spoken span overlaps the message's most."""
    best, overlap = None, 0.0
    for u in truth:
        o = min(msg["end"], u["end"]) - max(msg["start"], u["start"])
        if o > overlap:
            best, overlap = u, o
    return best


def measure_one(n: int, args) -> dict:
    """Runs in a child process: n paced demo streams through one Pipeline."""
    from bench.common import summary
    from fdrl_core.speech_frontend import DEFAULT_WINDOW, WindowPolicy
    from stream.asr import AsrConfig, Recognizer
    from stream.config import PipelineConfig
    from stream.emotion import EmotionConfig, EmotionStage
    from stream.pipeline import Pipeline, rss_mb
    from stream.sources import DemoSource

    class Bus:  # the publisher's interface without sockets: messages are counted, the observers see them
        sent = failures = 0

        def send(self, topic, msg):
            self.sent += 1

    from bench.machine import hardware_path

    hw = hardware_path(args.device)
    asr = AsrConfig(device=hw.asr_device, compute_type=hw.asr_compute_type)
    if args.partial_every is not None:
        asr.partial_every_s = args.partial_every
    emo = EmotionConfig(model=args.model, backend=args.backend, device=hw.emotion_device)
    cfg = PipelineConfig(asr=asr, emotion=emo, stream_id="bench")
    recognizer, emotion = Recognizer(cfg.asr), EmotionStage(cfg.emotion)
    rss_models = rss_mb()
    events, lock = [], threading.Lock()

    def observe(ev):
        with lock:
            events.append(ev)

    class Staggered(DemoSource):
        def __init__(self, delay):
            super().__init__(realtime=True)
            self.delay = delay

        def start(self):
            time.sleep(self.delay)
            super().start()

    sources = [Staggered(i * args.stagger) for i in range(n)]
    pipe = Pipeline(cfg, sources, recognizer, emotion, Bus(), out=open(os.devnull, "w"), log=sys.stderr,
                    observers=[observe])
    if args.window != "model":
        recognizer.window = DEFAULT_WINDOW if args.window == "default" else WindowPolicy.legacy()
    c0, t0 = time.process_time(), time.monotonic()
    pipe.run()
    cpu_s, wall_s = time.process_time() - c0, time.monotonic() - t0

    truth = _truth()
    t_start = {e.stream_id: e.t - e.audio_t for e in events if e.kind == "source_start"}  # audio clock origin
    true_end_ms, first_partial_ms, contradicted, stable_n, missed, revised = [], [], 0, 0, 0, 0
    vad_end_ms, final_pass_ms, labels = [], [], []
    for sid, t0s in t_start.items():
        pub = [e for e in events if e.kind == "published" and e.stream_id == sid and e.data["topic"] == "emotion"]
        by_utt: dict[int, list] = {}
        for e in pub:
            by_utt.setdefault(e.data["message"]["utterance_id"], []).append(e)
        seen = set()
        for evs in by_utt.values():
            finals = [e for e in evs if not e.data["partial"]]
            if not finals:
                continue
            u = _match(finals[-1].data["message"], truth)
            if u is None:
                continue
            seen.add(u["id"])
            standing = max(finals, key=lambda e: e.data["revision"])  # the final that was not replaced
            true_end_ms.append((standing.t - (t0s + u["end"])) * 1000)
            revised += len(finals) - 1
            partials = [e for e in evs if e.data["partial"]]
            if partials:
                first_partial_ms.append((partials[0].t - (t0s + u["start"])) * 1000)
            last = max(finals, key=lambda e: e.data["revision"]).data["message"]["label"]
            labels.append([f"{e.data['message']['label']}{'*' if e.data['message']['stable'] else ''}"
                           f"{e.data['message']['confidence']:.2f}" for e in partials] + [last])
            for e in partials:
                if e.data["message"]["stable"]:
                    stable_n += 1
                    contradicted += e.data["message"]["label"] != last
        missed += len(truth) - len(seen)
        for e in events:  # where the VAD put the end of voice, against the true end
            if e.kind == "speech_end" and e.stream_id == sid and e.data.get("reason") == "silence":
                u = min(truth, key=lambda u: abs(u["end"] - e.audio_t))
                vad_end_ms.append((e.audio_t - u["end"]) * 1000)
    starts = {}
    for e in events:
        if e.kind == "pass_start" and e.data["final"]:
            starts[(e.stream_id, e.utterance_id)] = e.t
        elif e.kind == "pass_end" and e.data["final"] and (e.stream_id, e.utterance_id) in starts:
            final_pass_ms.append((e.t - starts.pop((e.stream_id, e.utterance_id))) * 1000)
    audio_min = sum(s.audio_samples for s in (x.stats for x in pipe.streams)) / 16000 / 60
    return {"streams": n, "wall_s": round(wall_s, 1), "true_end_to_final_emotion_ms": summary(true_end_ms),
            "first_partial_after_speech_start_ms": summary(first_partial_ms),
            "vad_end_minus_spoken_end_ms": summary(vad_end_ms), "final_pass_ms": summary(final_pass_ms),
            "labels_partials_then_final": labels[:12],
            "cpu_s_per_audio_minute": round(cpu_s / max(audio_min, 1e-9), 2),
            "dropped_audio_frames": sum(x.source.dropped_frames for x in pipe.streams),
            "utterances_missed": missed, "revised_finals": revised,
            "stable_partials": stable_n, "stable_contradicted_by_final": contradicted,
            "batched_passes": pipe.total_stats().batched_passes, "partials": pipe.total_stats().partials,
            "partials_skipped": pipe.total_stats().partials_skipped,
            "rss_mb_models_loaded": round(rss_models or 0, 1), "rss_mb_end": round(rss_mb() or 0, 1),
            "window": recognizer.window.describe(), "model": emotion.name, "hardware": hw.label}


def markdown(rep: dict) -> str:
    from bench.common import fmt
    from bench.machine import markdown_lines

    rows = rep["rows"]
    lines = [f"# Streams in one process, true end of speech -> final emotion ({rep['window']})", "",
             *markdown_lines(rep["machine"]), "",
             "| streams | true end -> final emotion, median / p95 ms | first partial after speech start, median ms "
             "| dropped audio frames | CPU s / audio min | RSS MB | stable partials contradicted by the final | "
             "revised finals | passes batched |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat, fp = r["true_end_to_final_emotion_ms"], r["first_partial_after_speech_start_ms"]
        lines.append(f"| {r['streams']} | {fmt(lat['median'])} / {fmt(lat['p95'])} | {fmt(fp['median'])} | "
                     f"{r['dropped_audio_frames']} | {r['cpu_s_per_audio_minute']:.1f} | {r['rss_mb_end']:.0f} | "
                     f"{r['stable_contradicted_by_final']} of {r['stable_partials']} | {r['revised_finals']} | "
                     f"{r['batched_passes']} |")
    if rep.get("rss_mb_per_added_stream") is not None:
        lines += ["", f"Memory per added stream: {rep['rss_mb_per_added_stream']:.1f} MB "
                      f"(RSS at the end, {rows[0]['streams']} vs {rows[-1]['streams']} streams)."]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    if args.one is not None:
        print("RESULT " + json.dumps(measure_one(args.one, args)), flush=True)
        return 0
    from bench.common import write_results
    from bench.machine import describe, hardware_path, load_average

    machine = describe(hardware_path(args.device))
    started = time.time()
    try:
        counts = [int(x) for x in args.streams.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"--streams {args.streams!r}: expected stream counts >= 1, comma-separated (e.g. 1,8)")
    rows = []
    for n in counts:
        cmd = [sys.executable, "-m", "bench", "multistream", "--one", str(n), "--stagger", str(args.stagger),
               "--window", args.window, "--device", args.device, "--backend", args.backend]
        if args.model:
            cmd += ["--model", args.model]
        if args.partial_every is not None:
            cmd += ["--partial-every", str(args.partial_every)]
        print(f"== {n} stream(s), ~{36 + n * args.stagger:.0f} s of real time", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if res.returncode != 0 or line is None:
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"bench multistream: {n} streams failed: {tail}", file=sys.stderr)
            return 1
        rows.append(json.loads(line[7:]))
    machine["load_average_end"] = load_average()
    per_stream = None
    if len(rows) > 1 and rows[-1]["streams"] != rows[0]["streams"]:
        per_stream = (rows[-1]["rss_mb_end"] - rows[0]["rss_mb_end"]) / (rows[-1]["streams"] - rows[0]["streams"])
    rep = {"benchmark": "multistream", "machine": machine, "window": rows[0]["window"], "rows": rows,
           "rss_mb_per_added_stream": per_stream, "stagger_s": args.stagger,
           "command": getattr(args, "command_line", "python -m bench multistream")}
    md = markdown(rep)
    js, mdp = write_results(Path(args.out), "multistream", started, rep, md)
    print(md)
    print(f"results: {js} {mdp}")
    return 0
