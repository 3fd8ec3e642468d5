"""How latency and CPU grow with utterance length and with concurrent streams, to size a device.

Length: utterances of about 1, 3, 8 and 15 s of speech are built from the speech in --audio (cut by the
run-time's own VAD, edges trimmed, joined with short gaps the VAD bridges, cut to length), a few of each in
a file with pauses between. Each file is replayed in real time through our pipeline (end of speech ->
emotion, CPU), and each utterance is also costed offline: ours, ours with a separate second encoder pass,
and the naive baseline. (Whisper always encodes a 30 s window, so the encoder cost is flat in length; decode
and the emotion model grow with it.)
Streams: N = 1, 2, 4 processes of `python -m stream.run --file X --realtime` started together on this
machine, as a user would run them: dropped audio, end-of-speech -> publish latency, CPU %, start-up, memory.
Results: <out>/scaling-<time>.json, .md and .png (also scaling-latest.*).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import DEFAULT_OUT, fmt, free_endpoint, summary, write_results
from bench.machine import describe, hardware_path, load_average, markdown_lines

GAP_MS = 150  # between joined speech pieces: far below the VAD's hangover, so they stay one utterance
EDGE_MS = 90  # audio kept around a piece's first and last voiced frame
PAUSE_S = 2.0  # between utterances in a length file: well above the hangover


def add_arguments(p) -> None:
    from stream.sources import DEMO_WAV

    p.add_argument("--audio", type=Path, default=DEMO_WAV,
                   help="speech to build utterances from and to replay per stream (default: the bundled demo)")
    p.add_argument("--model", default=None, help="FDRL checkpoint folder (default: $FDRL_MODEL, else the demo model)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                   help="emotion backend (default: auto, as stream.run)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA/TensorRT when this machine has a GPU, else CPU (default: auto)")
    p.add_argument("--asr-model", default=None, help="CTranslate2 Whisper folder (default: bundled tiny.en)")
    p.add_argument("--lengths", default="1,3,8,15",
                   help="seconds of speech per utterance; empty skips (default 1,3,8,15)")
    p.add_argument("--per-length", type=int, default=3, help="utterances of each length (default 3)")
    p.add_argument("--passes", type=int, default=1, help="offline cost passes per utterance (default 1)")
    p.add_argument("--no-baseline", action="store_true", help="cost only ours (and the separate-encoder variant)")
    p.add_argument("--streams", default="1,2,4", help="concurrent stream.run processes; empty skips (default 1,2,4)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")


def _numbers(text: str, kind=float) -> list:
    try:
        return [kind(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


# ------------------------------------------------------------------------------------------ utterances


def speech_pieces(audio: np.ndarray, vad_cfg) -> list[np.ndarray]:
    """The file's utterances as the VAD cuts them, trimmed to their voiced part (float32)."""
    from fdrl_core.audio import to_int16
    from stream.vad import Segmenter, SpeechEnd

    seg = Segmenter(vad_cfg, grow_every_ms=None)
    pcm = to_int16(audio)
    fs = seg.fs
    pieces = []
    events = []
    for i in range(0, len(pcm) - fs + 1, fs):
        events += seg.push(pcm[i:i + fs], i)
    events += seg.flush()
    edge = EDGE_MS * 16
    for ev in events:
        if not isinstance(ev, SpeechEnd):
            continue
        x = ev.audio
        voiced = [j for j in range(0, len(x) - fs + 1, fs) if seg.is_speech(x[j:j + fs])]
        if voiced:
            x = x[max(0, voiced[0] - edge): voiced[-1] + fs + edge]
        pieces.append(x.astype(np.float32) / 32768.0)
    return pieces


def build_utterance(pieces: list[np.ndarray], seconds: float, start: int = 0) -> np.ndarray:
    """About `seconds` of continuous speech: pieces joined with short gaps, cut to length (faded)."""
    n = int(seconds * 16000)
    gap = np.zeros(GAP_MS * 16, np.float32)
    parts, have, i = [], 0, start
    while have < n:
        p = pieces[i % len(pieces)]
        parts += [p, gap]
        have += len(p) + len(gap)
        i += 1
    x = np.concatenate(parts)[:n].copy()
    fade = min(len(x), 320)
    x[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return x


def write_length_file(path: Path, utterances: list[np.ndarray]) -> Path:
    import soundfile as sf

    pause = np.zeros(int(PAUSE_S * 16000), np.float32)
    chunks = [np.zeros(8000, np.float32)]
    for u in utterances:
        chunks += [u, pause]
    sf.write(str(path), np.concatenate(chunks), 16000, subtype="PCM_16")
    return path


# ------------------------------------------------------------------------------------------ run


def run(args) -> int:
    from bench.baseline import BaselineOptions, NaiveStack, torch_default_threads
    from bench.common import Receiver
    from bench.compare import compare
    from bench.instrument import OurStack, StackOptions, realtime_summary, run_ours_realtime
    from bench.streams import run_streams
    from fdrl_core.audio import SAMPLE_RATE, load_audio
    from stream.emotion import resolve_model
    from stream.publisher import Publisher

    lengths = _numbers(args.lengths)
    streams = _numbers(args.streams, int)
    if any(x <= 0 or x > 28 for x in lengths):
        raise ValueError("--lengths must be between 0 and 28 s (one Whisper window)")
    if any(n < 1 for n in streams) or args.per_length < 1 or args.passes < 1:
        raise ValueError("--streams, --per-length and --passes must be >= 1")
    if not lengths and not streams:
        raise ValueError("nothing to do: both --lengths and --streams are empty")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.time()
    hw = hardware_path(args.device)
    machine = describe(hw)
    audio = load_audio(args.audio)
    model = resolve_model(args.model)
    notes: list[str] = [f"GPU path: {hw.label}"] if hw.gpu else []
    log(f"bench scaling: {args.audio}, {hw.label}")

    length_rows: list[dict] = []
    setup: dict = {"audio": str(args.audio), "audio_s": round(len(audio) / SAMPLE_RATE, 2), "lengths": lengths,
                   "per_length": args.per_length, "passes": args.passes, "streams": streams,
                   "model": str(model), "backend": args.backend}
    if lengths:
        torch_default = torch_default_threads()
        endpoint = free_endpoint()
        publisher = Publisher(endpoint)
        receiver = Receiver(endpoint, topics=("emotion",))
        try:
            ours = OurStack(StackOptions(model=str(model), backend=args.backend, asr_model=args.asr_model), hw)
            naive = None if args.no_baseline else NaiveStack(
                BaselineOptions(model=str(model), asr_model=args.asr_model), hw, torch_default)
            setup["ours"] = ours.describe()
            setup["baseline"] = naive.describe() if naive else None
            vad = replace(ours.cfg.vad, max_utterance_s=min(29.0, max(ours.cfg.vad.max_utterance_s, max(lengths) + 2)))
            if vad.max_utterance_s != ours.cfg.vad.max_utterance_s:
                notes.append(f"VAD maximum utterance raised from {ours.cfg.vad.max_utterance_s:g} s to "
                             f"{vad.max_utterance_s:g} s so that {max(lengths):g} s of speech stays one utterance")
            pieces = speech_pieces(audio, ours.cfg.vad)
            if not pieces:
                raise ValueError(f"no speech found in {args.audio}")
            warm = build_utterance(pieces, 3.0)
            ours.warmup(warm)
            if naive:
                naive.warmup(warm)
            with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
                for L in lengths:
                    utts = [build_utterance(pieces, L, start=k * 2) for k in range(args.per_length)]
                    path = write_length_file(Path(tmp) / f"len{L:g}.wav", utts)
                    rt = realtime_summary([run_ours_realtime(ours, path, publisher, receiver, f"bench-len{L:g}",
                                                             vad=vad)])
                    variants = ("ours", "separate") if naive is None else ("ours", "separate", "baseline")
                    off = compare(ours, naive, utts, args.passes, publisher, variants=variants)
                    if rt["utterances"] != args.per_length:
                        notes.append(f"{L:g} s: the VAD cut {rt['utterances']} utterances from {args.per_length}")
                    length_rows.append(_length_row(L, rt, off))
        finally:
            receiver.close()
            publisher.close()

    stream_rows: list[dict] = []
    for n in streams:
        log(f"{n} concurrent stream.run process(es) on {args.audio} ...")
        res = run_streams(n, args.audio, str(model), args.backend, hw,
                          timeout_s=len(audio) / SAMPLE_RATE + 120 + 60 * n, tag="bench-scaling")
        for s in res["streams"]:
            if s["returncode"]:
                notes.append(f"{n} streams: {s['stream_id']} exited {s['returncode']}: " + " | ".join(s["stderr_tail"]))
        stream_rows.append(res)
        time.sleep(2.0)  # let the machine settle between runs
    machine["load_average_end"] = load_average()

    two = next((r for r in stream_rows if r["n"] == 2), None)
    targets = []
    if two is not None:
        met = two["all_ok"] and two["dropped_audio_frames"] == 0
        targets.append({"name": "two concurrent real-time streams without dropped audio",
                        "value": two["dropped_audio_frames"], "target": "0 dropped frames", "met": met})
    report = {"benchmark": "scaling", "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
              "command": getattr(args, "command_line", None) or "python -m bench scaling",
              "machine": machine, "setup": setup, "lengths": length_rows, "streams": stream_rows,
              "targets": targets, "notes": notes}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"scaling-{stamp}.png"
    plot(report, png)
    report["plot"] = str(png)
    md = markdown(report)
    js, mdp = write_results(args.out, "scaling", started, report, md)
    (args.out / "scaling-latest.png").write_bytes(png.read_bytes())
    print(md)
    print(f"wrote {js}, {mdp} and {png}")
    return 0


def _length_row(L: float, rt: dict, off: dict) -> dict:
    rows = rt["per_utterance"]
    v = off["variants"]

    def cpu(variant: str, key: str = "asr_emotion"):
        return v.get(variant, {}).get(key, {}).get("cpu_ms", {}).get("median")

    def wall(variant: str, key: str):
        return v.get(variant, {}).get(key, {}).get("wall_ms", {}).get("median")

    return {"speech_s": L, "utterance_s": summary(r["duration_s"] for r in rows),
            "eos_to_emotion_ms": rt["latency_ms"]["eos_to_emotion"],
            "speech_end_to_emotion_ms": rt["latency_ms"]["speech_end_to_emotion"],
            "speculative": rt["speculative"], "utterances": rt["utterances"],
            "cpu_s_per_audio_s": rt["cpu_s_per_audio_s"], "processing_rtf": rt["processing_rtf"],
            "dropped_audio_frames": rt["dropped_audio_frames"],
            "final_pass_ms": rt["stages_ms"].get("final_pass"),
            "cost_ms": {"encoder": wall("ours", "encoder"), "decode": wall("ours", "decode"),
                        "emotion": wall("ours", "emotion"), "ours_wall": wall("ours", "asr_emotion"),
                        "ours_cpu": cpu("ours"), "separate_cpu": cpu("separate"),
                        "baseline_wall": wall("baseline", "asr_emotion"), "baseline_cpu": cpu("baseline")},
            "shared_encoder_saving": off["shared_encoder_saving"]["cpu"],
            "realtime": {k: val for k, val in rt.items() if k != "per_utterance"}, "per_utterance": rows,
            "offline": off}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ output


def plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = rep["lengths"]
    if rows:
        x = [r["speech_s"] for r in rows]

        def series(f):
            return [np.nan if f(r) is None else f(r) for r in rows]

        voice = "speech_end_to_emotion_ms"
        a.plot(x, series(lambda r: r[voice]["median"]), "o-", label="end of voice -> emotion, median")
        a.plot(x, series(lambda r: r[voice]["p95"]), "o--", label="end of voice -> emotion, p95")
        a.plot(x, series(lambda r: r["cost_ms"]["ours_cpu"]), "s-", label="CPU per utterance, ours")
        a.plot(x, series(lambda r: r["cost_ms"]["separate_cpu"]), "s:", label="CPU, separate encoder pass")
        if any(r["cost_ms"]["baseline_cpu"] is not None for r in rows):
            a.plot(x, series(lambda r: r["cost_ms"]["baseline_cpu"]), "^-", label="CPU per utterance, naive baseline")
        a.set_xlabel("speech per utterance (s)")
        a.set_ylabel("ms")
        a.set_title("Utterance length (real-time replay; CPU per final pass)")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    else:
        a.set_axis_off()
    srows = rep["streams"]
    if srows:
        n = [r["n"] for r in srows]
        b.plot(n, [r["voice_end_to_publish_ms"]["median"] or np.nan for r in srows], "o-",
               label="end of voice -> publish, median")
        b.plot(n, [r["voice_end_to_publish_ms"]["p95"] or np.nan for r in srows], "o--",
               label="end of voice -> publish, p95")
        b.set_xlabel("concurrent stream.run processes")
        b.set_ylabel("ms")
        b.set_xticks(n)
        b2 = b.twinx()
        b2.bar(n, [r["cpu_pct_sum"] for r in srows], alpha=0.2, color="gray", width=0.4, label="CPU %, all streams")
        b2.set_ylabel("CPU % (100 = one core)")
        for r in srows:
            b2.annotate(f"dropped {r['dropped_audio_frames']}", (r["n"], r["cpu_pct_sum"]), ha="center",
                        va="bottom", fontsize=8)
        b.set_title("Concurrent real-time streams")
        b.grid(alpha=0.3)
        h1, l1 = b.get_legend_handles_labels()
        h2, l2 = b2.get_legend_handles_labels()
        b.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    else:
        b.set_axis_off()
    m = rep["machine"]
    fig.suptitle(f"{m['cpu']}, {m['usable_cpus']} CPUs, load at start {m['load_average_start']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rep: dict) -> str:
    lines = [f"# Scaling: utterance length and concurrent streams ({rep['started'].replace('T', ' ')})", "",
             *markdown_lines(rep["machine"]), f"Model: {rep['setup']['model']} (backend {rep['setup']['backend']})", ""]
    if rep["lengths"]:
        s = rep["setup"]
        lines += [f"## Utterance length ({s['per_length']} utterances per length, real-time replay; offline costs "
                  f"{s['passes']} pass(es))", "",
                  "| speech s | utterance s (VAD cut) | end of voice -> emotion median ms | p95 ms | speculative | "
                  "encoder ms | decode ms | emotion ms | CPU ms per utterance: ours | separate encoder | baseline | "
                  "CPU s per audio s |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rep["lengths"]:
            c, voice = r["cost_ms"], r["speech_end_to_emotion_ms"]
            lines.append(f"| {r['speech_s']:g} | {fmt(r['utterance_s']['median'], 1)} | "
                         f"{fmt(voice['median'])} | {fmt(voice['p95'])} | "
                         f"{r['speculative']}/{r['utterances']} | {fmt(c['encoder'])} | {fmt(c['decode'])} | "
                         f"{fmt(c['emotion'])} | {fmt(c['ours_cpu'])} | {fmt(c['separate_cpu'])} | "
                         f"{fmt(c['baseline_cpu'])} | {fmt(r['cpu_s_per_audio_s'], 2)} |")
        lines += ["", "End of voice: the utterance's last voiced audio (the VAD's decision comes 600 ms later, and "
                  "finals go out at the 120 ms pause, before it). "
                  "Utterance s is what the VAD cut (pre-roll and tail included). Whisper encodes a 30 s window "
                  "whatever the length, so its cost is flat; decode and the emotion model grow with the words.", ""]
    if rep["streams"]:
        lines += ["## Concurrent streams (separate `python -m stream.run --file ... --realtime` processes)", "",
                  "| streams | all exited 0 | dropped audio frames | end of voice -> publish median ms | p95 ms | "
                  "utterances | CPU % per stream (mean) | CPU % all streams | machine CPU % | start-up s (median) | "
                  "peak RSS MB (max) |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rep["streams"]:
            per = [s["cpu_pct_while_streaming"] for s in r["streams"] if s["cpu_pct_while_streaming"] is not None]
            voice = r["voice_end_to_publish_ms"]
            lines.append(f"| {r['n']} | {'yes' if r['all_ok'] else '**no**'} | {fmt(r['dropped_audio_frames'])} | "
                         f"{fmt(voice['median'])} | {fmt(voice['p95'])} | "
                         f"{sum(s['utterances'] for s in r['streams'])} | "
                         f"{fmt(sum(per) / len(per) if per else None)} | {fmt(r['cpu_pct_sum'])} | "
                         f"{fmt(r['machine_cpu_pct_while_all_ran'])} | {fmt(r['startup_s']['median'], 1)} | "
                         f"{fmt(r['peak_rss_mb'])} |")
        lines += ["", "CPU %: 100 = one core busy. Machine CPU % counts every process on the machine (other load "
                  "included) while all streams ran. EOS -> publish is what each stream reports in its messages.", ""]
    for t in rep["targets"]:
        lines.append(f"Target: {t['name']}: {t['value']} ({t['target']}) -> {'met' if t['met'] else '**not met**'}")
    lines += [f"- {n}" for n in rep["notes"]]
    lines += ["", f"Plot: {Path(rep['plot']).name}", "", f"Reproduce: `{rep['command']}`"]
    return "\n".join(lines) + "\n"
