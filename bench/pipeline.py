"""End of speech -> final emotion message, our run-time against the naive pipeline, in one run.

1. Real time: the file is replayed paced like a microphone through stream's own pipeline (segmenter and
   recogniser threads, partial transcripts, speculative final pass) and through the naive baseline
   (faster-whisper transcribe() + a second encoder pass + PyTorch FDRL, one thread). Per utterance: the
   time from the VAD's end-of-speech decision to a subscriber receiving the final emotion message, its
   split (queue wait, Whisper encoder, decode, text encoder, FDRL, publish), CPU, real-time factor.
2. Per-utterance cost on the same utterances, interleaved: ours, ours with a separate second encoder
   pass (what sharing the encoder saves), and the baseline; wall and process CPU time, paired ratios.
3. `python -m stream.run --file ... --realtime` in its own process: start-up to first ready, peak
   resident memory, CPU, dropped audio.
Results: <out>/pipeline-<time>.json and .md (also pipeline-latest.*), the machine described in both.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench.common import DEFAULT_OUT, fmt, free_endpoint, ratio, write_results
from bench.machine import describe, hardware_path, load_average, markdown_lines

TARGET_LATENCY_MS = 500
TARGET_SPEEDUP = 1.5
TARGET_SAVING = 0.30


def add_arguments(p) -> None:
    from stream.sources import DEMO_WAV

    p.add_argument("--audio", type=Path, default=DEMO_WAV, help="speech file to replay (default: the bundled demo)")
    p.add_argument("--model", default=None,
                   help="FDRL checkpoint folder (its ONNX export, if any, is what --backend auto runs; the baseline "
                        "runs the checkpoint with PyTorch). Default: $FDRL_MODEL, else the bundled demo model")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                   help="our pipeline's emotion backend (default: auto, as stream.run)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA/TensorRT when this machine has a GPU, else CPU (default: auto)")
    p.add_argument("--asr-model", default=None, help="CTranslate2 Whisper folder (default: bundled tiny.en)")
    p.add_argument("--repeat", type=int, default=1, help="real-time replays per pipeline, interleaved (default 1)")
    p.add_argument("--passes", type=int, default=3,
                   help="interleaved offline passes per utterance for the cost comparison (default 3)")
    p.add_argument("--no-baseline", action="store_true",
                   help="measure ours only (also automatic where PyTorch, which the baseline needs, is not installed)")
    p.add_argument("--no-cli", action="store_true",
                   help="skip the separate stream.run process (start-up time and peak memory are then not measured)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")


def _check(args) -> None:
    if args.repeat < 1 or args.passes < 1:
        raise ValueError("--repeat and --passes must be >= 1")


def run(args) -> int:
    import numpy as np

    from bench.baseline import BaselineOptions, NaiveStack, run_naive_realtime, torch_default_threads
    from bench.common import Receiver
    from bench.compare import VARIANTS, compare
    from bench.instrument import OurStack, StackOptions, realtime_summary, run_ours_realtime
    from bench.streams import run_streams
    from fdrl_core.audio import SAMPLE_RATE, load_audio
    from stream.backends import BackendError
    from stream.emotion import resolve_model
    from stream.publisher import Publisher

    _check(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.time()
    hw = hardware_path(args.device)
    machine = describe(hw)
    audio = load_audio(args.audio)  # fails early, one line, on a bad file
    model = resolve_model(args.model)
    notes: list[str] = []
    if hw.gpu:
        notes.append(f"GPU path: {hw.label}")
    log(f"bench pipeline: {args.audio} ({len(audio) / SAMPLE_RATE:.1f} s), {hw.label}")

    torch_default = torch_default_threads()  # before any model sets it: the baseline runs with torch's default
    endpoint = free_endpoint()
    publisher = Publisher(endpoint)
    receiver = Receiver(endpoint, topics=("emotion",))
    try:
        log("loading our pipeline (as stream.run)" + ("" if args.no_baseline else " and the naive baseline") + " ...")
        ours = OurStack(StackOptions(model=str(model), backend=args.backend, asr_model=args.asr_model), hw)
        naive = None
        if not args.no_baseline:
            try:
                naive = NaiveStack(BaselineOptions(model=str(model), asr_model=args.asr_model), hw, torch_default)
            except (ImportError, BackendError) as e:  # an edge image without PyTorch: ours is still measured
                notes.append(f"naive baseline not run: {e}")
        warm = audio[: 5 * SAMPLE_RATE]
        ours.warmup(warm)
        if naive is not None:
            naive.warmup(warm)

        ours_runs, naive_runs = [], []
        for r in range(args.repeat):
            order = ("ours", "naive") if r % 2 == 0 else ("naive", "ours")
            for which in order:
                if which == "naive" and naive is None:
                    continue
                if which == "ours":
                    ours_runs.append(run_ours_realtime(ours, args.audio, publisher, receiver, f"bench-ours-{r}"))
                else:
                    naive_runs.append(run_naive_realtime(naive, args.audio, ours.cfg.vad, publisher, receiver,
                                                         f"bench-naive-{r}"))
        rt_ours, rt_naive = realtime_summary(ours_runs), realtime_summary(naive_runs) if naive_runs else None
        utterances = [rec.audio.astype(np.float32) / 32768.0 for rec in ours_runs[0].records]
        if naive_runs and len(utterances) != len(naive_runs[0].records):
            notes.append(f"the VAD cut {len(utterances)} utterances for ours but {len(naive_runs[0].records)} for the "
                         "baseline (real-time pacing differed); the cost comparison uses ours'")
        if not utterances:
            raise ValueError(f"no speech found in {args.audio}: nothing to measure")
        variants = VARIANTS if naive is not None else ("ours", "separate")
        offline = compare(ours, naive, utterances, args.passes, publisher, variants=variants)
    finally:
        receiver.close()
        publisher.close()

    cli = None
    if not args.no_cli:
        log("python -m stream.run --file ... --realtime in its own process (start-up, memory) ...")
        cli = run_streams(1, args.audio, str(model), args.backend, hw,
                          timeout_s=len(audio) / SAMPLE_RATE + 300, tag="bench-cli")
        if not cli["all_ok"]:
            notes.append("the stream.run process failed: " + " | ".join(cli["streams"][0]["stderr_tail"]))
    machine["load_average_end"] = load_average()

    report = build_report(args, machine, ours, naive, rt_ours, rt_naive, offline, cli, notes, started,
                          len(audio) / SAMPLE_RATE)
    md = markdown(report)
    js, mdp = write_results(args.out, "pipeline", started, report, md)
    print(md)
    print(f"wrote {js} and {mdp}")
    return 0


def build_report(args, machine, ours, naive, rt_ours, rt_naive, offline, cli, notes, started, audio_s) -> dict:
    # ratios from the last voiced audio: the VAD decision is no common origin (ours publishes an early final
    # at the pause, before its hangover ends; the baseline waits for the decision)
    lat_o = rt_ours["latency_ms"]["speech_end_to_emotion"]["median"]
    rt_b = rt_naive or {"latency_ms": {"speech_end_to_emotion": {}}, "cpu_s_per_audio_s": None}
    lat_b = rt_b["latency_ms"]["speech_end_to_emotion"].get("median")
    p95_o = rt_ours["latency_ms"]["speech_end_to_emotion"]["p95"]
    p95_b = rt_b["latency_ms"]["speech_end_to_emotion"].get("p95")
    speedup = ratio(lat_b, lat_o)
    compute_speedup = offline["ours_vs_baseline"]["wall_speedup"]
    saving = offline["shared_encoder_saving"]["cpu"]
    cli_stream = cli["streams"][0] if cli else {}
    ratios = {
        "latency_median_ours_over_baseline": ratio(lat_o, lat_b),
        "latency_p95_ours_over_baseline": ratio(p95_o, p95_b),
        "latency_speedup": speedup,
        "compute_wall_ours_over_baseline": offline["ours_vs_baseline"]["wall_ratio"],
        "compute_cpu_ours_over_baseline": offline["ours_vs_baseline"]["cpu_ratio"],
        "compute_speedup": compute_speedup,
        "compute_speedup_vs_baseline_1thread": offline.get("ours_vs_baseline_1thread", {}).get("wall_speedup"),
        "cpu_per_audio_s_ours_over_baseline": ratio(rt_ours["cpu_s_per_audio_s"], rt_b["cpu_s_per_audio_s"]),
    }
    targets = [
        _target("end of speech -> final emotion, median", lat_o, f"< {TARGET_LATENCY_MS} ms",
                None if lat_o is None else lat_o < TARGET_LATENCY_MS, "ms"),
        _target("faster than the naive baseline (latency median)", speedup, f">= {TARGET_SPEEDUP}x",
                None if speedup is None else speedup >= TARGET_SPEEDUP, "x"),
        _target("shared encoder: CPU of ASR + emotion per utterance saved", saving, f">= {TARGET_SAVING:.0%}",
                None if saving is None else saving >= TARGET_SAVING, "fraction"),
    ]
    return {
        "benchmark": "pipeline",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "command": getattr(args, "command_line", None) or "python -m bench pipeline",
        "machine": machine,
        "setup": {"audio": str(args.audio), "audio_s": round(audio_s, 2), "repeat": args.repeat,
                  "passes": args.passes, "ours": ours.describe(), "baseline": naive.describe() if naive else None,
                  "hardware_path": machine.get("hardware_path", {}).get("label")},
        "realtime": {"ours": rt_ours, "baseline": rt_naive},
        "offline": offline,
        "ratios": ratios,
        "shared_encoder": {"saving_cpu": saving, "saving_wall": offline["shared_encoder_saving"]["wall"],
                           "ours_asr_emotion": offline["variants"]["ours"]["asr_emotion"],
                           "separate_asr_emotion": offline["variants"]["separate"]["asr_emotion"]},
        "startup": {"startup_s": cli_stream.get("startup_s"), "peak_rss_mb": cli_stream.get("peak_rss_mb"),
                    "in_process_model_load_s": round(ours.load_s, 2), "cli": cli},
        "targets": targets,
        "notes": notes,
    }


def _target(name, value, target, met, unit) -> dict:
    return {"name": name, "value": value, "target": target, "met": met, "unit": unit}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ markdown


def _med(s: dict | None, nd: int = 0) -> str:
    return fmt((s or {}).get("median"), nd)


def _p95(s: dict | None, nd: int = 0) -> str:
    return fmt((s or {}).get("p95"), nd)


STAGE_NAMES = {
    "speculative_rest": "after the decision: rest of the speculative final pass",
    "queue_wait": "after the decision: waiting for other work (a partial pass)",
    "final_pass_after_eos": "after the decision: final pass (not speculative)",
    "publish": "after the decision: publish (until a subscriber has it)",
    "final_pass": "final pass, wherever it ran",
    "encoder": "Whisper encoder (shared pass)",
    "decode": "Whisper decode (+ frames for FDRL)",
    "tokenize": "tokenise transcript",
    "graph": "text encoder + FDRL (one graph)",
    "text_encoder": "text encoder (MiniLM)",
    "fdrl": "FDRL head",
    "emotion": "emotion total",
}


def markdown(rep: dict) -> str:
    m, s, rt = rep["machine"], rep["setup"], rep["realtime"]
    o, b = rt["ours"], rt["baseline"]
    so, sb = s["ours"], s["baseline"]
    lines = [f"# Pipeline benchmark: end of speech -> final emotion ({rep['started'].replace('T', ' ')})", "",
             *markdown_lines(m),
             f"Audio: {s['audio']} ({s['audio_s']} s; {o['utterances'] // max(1, o['replays'])} utterances as cut by "
             f"webrtcvad), {s['repeat']} real-time replay(s) per pipeline, {s['passes']} interleaved cost pass(es)",
             f"Ours: emotion {so['emotion']} on {so['emotion_device']} ({so['emotion_threads']} thread); Whisper "
             f"{so['asr_model']} {so['compute_type']} on {so['asr_device']} ({so['asr_threads']} threads), final beam "
             f"{so['beam_final']}, greedy partials every {so['partial_every_s']} s, speculative final pass "
             f"{'on' if so['speculative'] else 'off'}; VAD hangover {so['vad_hangover_ms']} ms",
             (f"Baseline: {sb['asr']} ({sb['compute_type']}, {sb['asr_threads']} threads), {sb['speech_frames']}, "
              f"{sb['emotion']} ({sb['torch_threads']} torch threads)" if sb else "Baseline: not run"), ""]

    lines += ["## Latency, real-time replay (paced like a microphone)", "",
              "| pipeline | end-of-speech decision -> emotion, median ms | p95 ms | last voiced audio -> emotion, "
              "median ms | p95 ms | utterances | CPU s per audio s | processing RTF | dropped audio frames |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in (("ours", o), ("naive baseline", b)):
        if r is None:
            continue
        lat = r["latency_ms"]
        lines.append(f"| {name} | {_med(lat['eos_to_emotion'])} | {_p95(lat['eos_to_emotion'])} | "
                     f"{_med(lat['speech_end_to_emotion'])} | {_p95(lat['speech_end_to_emotion'])} | "
                     f"{r['utterances']} | {fmt(r['cpu_s_per_audio_s'], 2)} | {fmt(r['processing_rtf'], 3)} | "
                     f"{r['dropped_audio_frames']} |")
    ra = rep["ratios"]
    if b is not None:
        ed_o, ed_b = o["latency_ms"]["eos_to_emotion"], b["latency_ms"]["eos_to_emotion"]
        lines.append(f"| ours / baseline | {fmt(ratio(ed_o['median'], ed_b['median']), 3)} | "
                     f"{fmt(ratio(ed_o['p95'], ed_b['p95']), 3)} | "
                     f"{fmt(ra['latency_median_ours_over_baseline'], 3)} | "
                     f"{fmt(ra['latency_p95_ours_over_baseline'], 3)} | "
                     f"| {fmt(ra['cpu_per_audio_s_ours_over_baseline'], 2)} | | |")
    lines += ["", "Ours' CPU includes its partial transcripts and provisional emotions "
              f"({o.get('partials', 0)} partial passes); the baseline does nothing until an utterance ends. The "
              f"decision column starts after the VAD's {so['vad_hangover_ms']} ms hangover; ours publishes an early "
              "final once a shorter pause fixes the audio, so its decision column is negative when the final arrived "
              f"before the hangover ended. Ratios are from the last voiced audio. Speculative final "
              f"passes (done during the hangover): {o['speculative']} of {o['utterances']}.", ""]

    lines += ["## Targets", "", "| target | measured | goal | met |", "|---|---:|---:|---|"]
    for t in rep["targets"]:
        v = t["value"]
        shown = "-" if v is None else f"{v:.0%}" if t["unit"] == "fraction" else f"{v:.2f}x" if t["unit"] == "x" \
            else f"{v:.0f} ms"
        lines.append(f"| {t['name']} | {shown} | {t['target']} | {_met(t['met'])} |")
    lines += [f"| (compute per utterance, interleaved) faster than the baseline | {fmt(ra['compute_speedup'], 2, 'x')} "
              f"| | |",
              f"| (compute per utterance) faster than the baseline with torch on 1 thread | "
              f"{fmt(ra['compute_speedup_vs_baseline_1thread'], 2, 'x')} | | |", ""]

    lines += ["## Where the time goes: ours, per utterance (real-time replay)", "",
              "| stage | median ms | p95 ms | CPU median ms |", "|---|---:|---:|---:|"]
    for k, name in STAGE_NAMES.items():
        if k in o["stages_ms"] and o["stages_ms"][k]["n"]:
            lines.append(f"| {name} | {_med(o['stages_ms'][k], 1)} | {_p95(o['stages_ms'][k], 1)} | "
                         f"{_med(o['stages_cpu_ms'].get(k), 1)} |")
    lines.append(f"| **end-of-speech decision -> emotion received** | {_med(o['latency_ms']['eos_to_emotion'], 1)} "
                 f"| {_p95(o['latency_ms']['eos_to_emotion'], 1)} | |")
    lines += ["", "Encoder/decode/text/FDRL are the final pass's costs wherever it ran (speculatively before the "
              "decision, or after it); only queue wait, the part of the final pass after the decision, and publish "
              "lie between the decision and the message.", ""]

    off = rep["offline"]["variants"]
    n_off = off["ours"]["n"]
    b1 = off.get("baseline_1thread", {})
    lines += [f"## Per-utterance cost, same utterances, interleaved ({n_off} runs per variant)", "",
              "| stage | ours wall ms | ours CPU ms | baseline wall ms | baseline CPU ms | baseline, torch 1 thread: "
              "wall ms | CPU ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [("asr", "ASR (ours: encoder + decode; baseline: transcribe())"), ("encoder", "  Whisper encoder"),
            ("decode", "  Whisper decode"), ("second_encoder", "second encoder pass for the emotion"),
            ("emotion", "emotion (text encoder + FDRL)"), ("text_encoder", "  text encoder"), ("fdrl", "  FDRL"),
            ("publish", "publish"), ("total", "**total**")]
    for k, name in rows:
        cells = []
        for v in (off["ours"], off.get("baseline", {}), b1):
            c = v.get(k, {})
            cells += [_med(c.get("wall_ms"), 1), _med(c.get("cpu_ms"), 1)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    vs, vs1 = rep["offline"]["ours_vs_baseline"], rep["offline"].get("ours_vs_baseline_1thread", {})
    lines += [f"| ours / variant (paired median) | | | {fmt(vs['wall_ratio'], 3)} | {fmt(vs['cpu_ratio'], 3)} | "
              f"{fmt(vs1.get('wall_ratio'), 3)} | {fmt(vs1.get('cpu_ratio'), 3)} |", "",
              "The baseline runs torch with its default thread pool, as a user gets it; on a small CPU that pool "
              "fights CTranslate2's spinning OpenMP threads. The last two columns limit torch to one thread (as ours "
              "does) to show how much of the gap is that and how much is the pipeline itself.", ""]
    if rep["setup"]["ours"]["backend"] in ("onnxruntime", "tensorrt"):
        lines += ["Our text encoder and FDRL run as one graph: FDRL is the graph run without a transcript and the text "
                  "encoder the difference, measured back to back.", ""]

    sh = rep["shared_encoder"]
    lines += ["## Sharing the Whisper encoder pass", "",
              "| ASR + emotion per utterance | wall median ms | CPU median ms |", "|---|---:|---:|",
              f"| shared encoder (ours) | {_med(sh['ours_asr_emotion']['wall_ms'], 1)} | "
              f"{_med(sh['ours_asr_emotion']['cpu_ms'], 1)} |",
              f"| separate second encoder pass | {_med(sh['separate_asr_emotion']['wall_ms'], 1)} | "
              f"{_med(sh['separate_asr_emotion']['cpu_ms'], 1)} |",
              f"| saved by sharing (paired median) | {fmt(_pct(sh['saving_wall']), 0, ' %')} | "
              f"{fmt(_pct(sh['saving_cpu']), 0, ' %')} |", ""]

    st = rep["startup"]
    lines += ["## Start-up and memory: `python -m stream.run --file ... --realtime` in its own process", ""]
    if st["cli"]:
        c = st["cli"]["streams"][0]
        lines += ["| start-up to first ready s | peak RSS MB | CPU while streaming | dropped audio frames | "
                  "end of voice -> publish median / p95 ms (its messages) | exit |", "|---:|---:|---:|---:|---:|---:|",
                  f"| {fmt(c['startup_s'], 1)} | {fmt(c['peak_rss_mb'], 0)} | "
                  f"{fmt(c['cpu_pct_while_streaming'], 0, ' %')} | {fmt(c['dropped_audio_frames'])} | "
                  f"{_med(c['voice_end_to_publish_ms'])} / {_p95(c['voice_end_to_publish_ms'])} | {c['returncode']} |",
                  ""]
    else:
        lines += ["not measured (--no-cli)", ""]
    lines.append(f"Models loaded in-process in {st['in_process_model_load_s']} s.")
    lines += [f"- {n}" for n in rep["notes"]]
    lines += ["", f"Reproduce: `{rep['command']}`"]
    return "\n".join(lines) + "\n"


def _pct(x):
    return None if x is None else 100 * x


def _met(m) -> str:
    return "-" if m is None else "yes" if m else "**no**"
