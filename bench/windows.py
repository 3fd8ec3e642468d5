"""python -m bench windows: WER and encoder cost of utterance-sized encoder windows against the 30 s window.

Speaks sentences with espeak-ng and festival voices (one and two sentences per utterance, so the
utterances span 1-12 s and several window buckets), adds the bundled demo's utterances, and runs every
utterance through the run-time recogniser (the final pass: encoder + beam decoding) once per window
policy: floors of 5, 10 and 15 s (utterance + margin, rounded up to a bucket) and the legacy 30 s
window. Policies are interleaved per utterance, so machine noise hits them alike. Reports the WER of
each policy per speech source, encoder wall/CPU ms per utterance, the cosine between each policy's FDRL
frames and the 30 s window's, and the policy the rule picks: the fastest whose WER is within +1.0 point
of the 30 s window.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from fdrl_core.speech_frontend import WindowPolicy

NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
           "sixteen seventeen eighteen nineteen twenty").split()
WER_SLACK = 1.0  # points of WER a shorter window may cost against the 30 s window


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bench.common import DEFAULT_OUT

    p.add_argument("--n", type=int, default=24, help="synthetic utterances per TTS engine (default: %(default)s)")
    p.add_argument("--floors", default="5,10,15", help="window floors in seconds (default: %(default)s)")
    p.add_argument("--margin", type=float, default=WindowPolicy().margin_s,
                   help="seconds added to the utterance before rounding up to a bucket (default: %(default)s)")
    p.add_argument("--buckets", default="5,10,15,20,30",
                   help="window sizes in seconds (default: %(default)s)")
    p.add_argument("--no-demo", action="store_true", help="leave out the bundled demo recording")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CTranslate2 CPU threads (default: one per core, <= 4)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="results folder (default: %(default)s)")


# ------------------------------------------------------------------ words


def _words(text: str) -> list[str]:
    from stream.asr import normalize

    out = []
    for w in normalize(text.replace("-", " ")).split():
        out.append(NUMBERS[int(w)] if re.fullmatch(r"\d+", w) and int(w) < len(NUMBERS) else w)
    return out


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


# ------------------------------------------------------------------ speech


def synthetic_utterances(n: int, seed: int, progress: bool = True) -> list[dict]:
    """n utterances per installed TTS engine; every third one is two sentences (longer windows)."""
    from train.synth.engines import synthesize
    from train.synth.sentences import WORDINGS, sentence_bank
    from train.synth.voices import ENGINES, is_installed, select_voices

    rng = np.random.default_rng(seed)
    bank = sentence_bank(max(8, n))
    pool = [s for w in WORDINGS for s in bank[w]]
    out = []
    for engine in ENGINES:
        try:
            voices = [v for v in select_voices((engine,)) if is_installed(v)]
        except Exception as e:  # a missing engine is reported, the others still run
            print(f"bench windows: {engine} skipped ({e})", flush=True)
            continue
        if not voices:
            print(f"bench windows: {engine} skipped (no voice installed)", flush=True)
            continue
        for i in range(n):
            k = 2 if i % 3 == 2 else 1
            picks = [pool[int(j)] for j in rng.choice(len(pool), size=k, replace=False)]
            voice = voices[i % len(voices)]
            parts = []
            for s in picks:
                parts.append(synthesize(s.text, s.wording, voice, rng).astype(np.float32) / 32768.0)
                parts.append(np.zeros(4800, dtype=np.float32))  # 0.3 s between sentences
            audio = np.concatenate(parts[:-1])
            out.append({"source": engine, "voice": voice.id, "text": " ".join(s.text for s in picks),
                        "audio": audio})
            if progress:
                print(f"\rsynthesising {engine}: {i + 1}/{n}", end="", flush=True)
        if progress:
            print(flush=True)
    return out


def demo_utterances(pad_s: float = 0.3) -> list[dict]:
    from fdrl_core.audio import SAMPLE_RATE, load_audio
    from stream.sources import DEMO_WAV

    info = json.loads(Path(DEMO_WAV).with_suffix(".json").read_text())
    audio = load_audio(DEMO_WAV)
    out = []
    for u in info["utterances"]:
        a, b = int(max(0, u["start"] - pad_s) * SAMPLE_RATE), int((u["end"] + pad_s) * SAMPLE_RATE)
        out.append({"source": "demo", "voice": u.get("voice", ""), "text": u["text"], "audio": audio[a:b]})
    return out


# ------------------------------------------------------------------ measurement


def policies(floors: list[float], margin: float, buckets: tuple[float, ...]) -> dict[str, WindowPolicy]:
    out = {f"floor {f:g} s": WindowPolicy(floor_s=f, margin_s=margin, buckets_s=buckets) for f in floors}
    out["30 s window"] = WindowPolicy.legacy()
    return out


def measure(utts: list[dict], pols: dict[str, WindowPolicy], threads: int, progress: bool = True) -> dict:
    from stream.asr import AsrConfig, Recognizer

    rec = Recognizer(AsrConfig(cpu_threads=threads))
    fe = rec.frontend
    rows = {name: {"encode_wall_ms": [], "encode_cpu_ms": [], "decode_ms": [], "cosine": [], "window_s": [],
                   "errors": {}, "ref_words": {}} for name in pols}
    ref_name = "30 s window"
    for k, u in enumerate(utts):
        audio, ref = u["audio"], _words(u["text"])
        frames = {}
        for name, pol in pols.items():
            rec.window = pol
            c0, t0 = time.process_time(), time.perf_counter()
            enc = fe.encode(audio, pol)
            wall, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
            frames[name] = fe.frames(encoder_output=enc, num_samples=len(audio))
            hyp = rec.transcribe(audio, final=True)
            r = rows[name]
            r["encode_wall_ms"].append(wall)
            r["encode_cpu_ms"].append(cpu)
            r["decode_ms"].append(hyp.decode_ms)
            r["window_s"].append(pol.window_s(len(audio)))
            r["errors"][u["source"]] = r["errors"].get(u["source"], 0) + edit_distance(ref, _words(hyp.text))
            r["ref_words"][u["source"]] = r["ref_words"].get(u["source"], 0) + len(ref)
        base = frames[ref_name]
        for name in pols:
            a, b = frames[name], base
            cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-9)
            rows[name]["cosine"].append(float(cos.mean()))
        if progress:
            print(f"\rmeasuring: {k + 1}/{len(utts)} utterances", end="", flush=True)
    if progress:
        print(flush=True)
    return rows


def summarise(rows: dict, pols: dict[str, WindowPolicy]) -> dict:
    from bench.common import summary

    table = {}
    for name, r in rows.items():
        errs, words = r["errors"], r["ref_words"]
        wer = {src: round(100 * errs[src] / max(1, words[src]), 2) for src in words}
        wer["all"] = round(100 * sum(errs.values()) / max(1, sum(words.values())), 2)
        table[name] = {"policy": pols[name].to_dict(), "wer": wer, "encode_wall_ms": summary(r["encode_wall_ms"]),
                       "encode_cpu_ms": summary(r["encode_cpu_ms"]), "decode_ms": summary(r["decode_ms"]),
                       "window_s": summary(r["window_s"]), "frame_cosine_vs_30s": summary(r["cosine"]),
                       "encode_cpu_ms_total": round(sum(r["encode_cpu_ms"]), 1)}
    return table


def pick(table: dict, ref: str = "30 s window") -> str:
    """The rule: the fastest policy (encoder CPU per utterance) within +WER_SLACK points of the 30 s window."""
    limit = table[ref]["wer"]["all"] + WER_SLACK
    ok = [n for n, t in table.items() if t["wer"]["all"] <= limit]
    return min(ok, key=lambda n: table[n]["encode_cpu_ms"]["mean"])


def markdown(report: dict) -> str:
    from bench.machine import markdown_lines

    t, ref = report["table"], report["table"]["30 s window"]
    sources = [s for s in ("espeak-ng", "festival", "demo") if s in ref["wer"]]
    head = ("| window policy | " + " | ".join(f"WER {s} %" for s in sources)
            + " | WER all % | encoder ms (median wall) | encoder CPU ms (mean) | CPU vs 30 s | "
              "mean window s | frame cosine vs 30 s |")
    lines = [f"# Encoder window policies ({report['n_utterances']} utterances, {report['utterance_s']['min']}-"
             f"{report['utterance_s']['max']} s)", "", *markdown_lines(report["machine"]), "", head,
             "|---|" + "---:|" * (len(sources) + 6)]
    for name, r in t.items():
        speed = ref["encode_cpu_ms"]["mean"] / r["encode_cpu_ms"]["mean"]
        mark = " **(chosen)**" if name == report["chosen"] else ""
        lines.append(f"| {name}{mark} | " + " | ".join(f"{r['wer'][s]:.1f}" for s in sources)
                     + f" | {r['wer']['all']:.1f} | {r['encode_wall_ms']['median']:.0f} | "
                       f"{r['encode_cpu_ms']['mean']:.0f} | {speed:.1f}x | {r['window_s']['mean']:.1f} | "
                       f"{r['frame_cosine_vs_30s']['median']:.3f} |")
    lines += ["", f"Rule: the fastest policy within +{WER_SLACK} WER point of the 30 s window -> "
                  f"**{report['chosen']}**.", ""]
    return "\n".join(lines)


def run(args) -> int:
    from bench.common import write_results
    from bench.machine import describe, load_average

    machine = describe()
    started = time.time()
    floors = [float(x) for x in args.floors.split(",") if x.strip()]
    buckets = tuple(float(x) for x in args.buckets.split(",") if x.strip())
    pols = policies(floors, args.margin, buckets)
    utts = synthetic_utterances(args.n, args.seed)
    if not args.no_demo:
        utts += demo_utterances()
    if not utts:
        print("bench windows: no speech to measure (install espeak-ng or festival, or drop --no-demo)")
        return 2
    rows = measure(utts, pols, args.threads)
    machine["load_average_end"] = load_average()
    table = summarise(rows, pols)
    chosen = pick(table)
    durations = [len(u["audio"]) / 16000 for u in utts]
    report = {"benchmark": "windows", "n_utterances": len(utts),
              "sources": {s: sum(u["source"] == s for u in utts) for s in {u["source"] for u in utts}},
              "utterance_s": {"min": round(min(durations), 2), "max": round(max(durations), 2),
                              "mean": round(float(np.mean(durations)), 2)},
              "machine": machine, "table": table, "chosen": chosen,
              "chosen_policy": table[chosen]["policy"], "rule": f"fastest within +{WER_SLACK} WER of 30 s",
              "command": getattr(args, "command_line", "python -m bench windows")}
    md = markdown(report)
    js, mdp = write_results(Path(args.out), "windows", started, report, md)
    print(md)
    print(f"results: {js} {mdp}")
    return 0
