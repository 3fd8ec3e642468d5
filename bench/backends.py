"""Emotion backends side by side in one run, on the same inputs: torch eager vs onnxruntime (vs TensorRT).

Cases: batch 1 (a 3 s utterance = 150 Whisper frames, a transcript of 12 tokens) and batch 8 of those.
Each backend is timed through predict_batch (tokenising and padding included: what the run-time pays).
Runs are interleaved round-robin, so load from other processes hits every backend alike. Also measured:
the resident memory that importing the onnxruntime backend and running one utterance adds, in a fresh
process where torch/transformers imports are blocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.common import DEFAULT_OUT

FILLER = ("i really did not think that you would come to see me here today after such a long and "
          "difficult year for all of us").split()


def add_arguments(p) -> None:
    p.add_argument("--model", type=Path, default=None,
                   help="checkpoint folder (default: $FDRL_MODEL, else the bundled demo model)")
    p.add_argument("--onnx", type=Path, default=None, help="ONNX export folder (default: <model>/onnx)")
    p.add_argument("--engine", type=Path, default=None,
                   help="TensorRT engine (default: one built for this device next to the ONNX or in the engine cache)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per backend and case (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op CPU threads for torch AND onnxruntime alike (default: the usable CPUs)")
    p.add_argument("--frames", type=int, default=150, help="speech frames per utterance (default 150 = 3 s)")
    p.add_argument("--tokens", type=int, default=12, help="text tokens per utterance incl. [CLS]/[SEP] (default 12)")
    p.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    p.add_argument("--no-memory", action="store_true", help="skip the onnxruntime memory measurement")


@dataclass
class Timing:
    backend: str
    batch: int
    median_ms: float
    p95_ms: float
    mean_ms: float
    runs: int
    speedup_vs_torch: float | None = None
    max_abs_diff_vs_torch: float | None = None


@dataclass
class Report:
    machine: dict
    setup: dict
    timings: list[Timing] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def text_with_tokens(tokenizer, n: int) -> str:
    """A sentence that tokenises to exactly n ids ([CLS] and [SEP] included)."""
    words: list[str] = []
    for w in FILLER * 4:
        ids, mask = tokenizer([" ".join(words + [w])])
        if int(mask.sum()) > n:
            continue
        words.append(w)
        if int(mask.sum()) == n:
            return " ".join(words)
    raise ValueError(f"could not build a {n}-token sentence")


def machine() -> dict:
    from bench.machine import describe, hardware_path

    return describe(hardware_path())


def _open_backends(args, notes: list[str]):
    from fdrl_core.assets import default_model_path
    from stream.backends import BackendError, OnnxRuntimeBackend, TensorRTBackend, TorchBackend, plan

    model = args.model or default_model_path()
    onnx_dir = args.onnx or Path(model) / "onnx"
    if not (Path(model) / "model.safetensors").is_file():
        raise ValueError(f"{model} is not a checkpoint folder (train one, or pass --model)")
    if not (Path(onnx_dir) / "fdrl.onnx").is_file():
        raise ValueError(f"no ONNX export in {onnx_dir}: run python -m export onnx --model {model} --out {onnx_dir}")
    backends = [TorchBackend(model, threads=args.threads), OnnxRuntimeBackend(onnx_dir, threads=args.threads)]
    try:
        engine = args.engine or plan("tensorrt", onnx_dir)[0][0][1]
        backends.append(TensorRTBackend(engine))
    except BackendError as e:
        notes.append(f"TensorRT not timed: {e}")
    return backends, model, onnx_dir


def _time_interleaved(backends, inputs, runs: int, warmup: int) -> dict[str, list[float]]:
    frames, texts = inputs
    for b in backends:
        for _ in range(warmup):
            b.predict_batch(frames, texts)
    times: dict[str, list[float]] = {b.name: [] for b in backends}
    for _ in range(runs):
        for b in backends:
            t0 = time.perf_counter()
            b.predict_batch(frames, texts)
            times[b.name].append(time.perf_counter() - t0)
    return times


MEMORY_PROBE = r"""
import sys, json
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(name + " is blocked in this measurement")
def _rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
sys.meta_path.insert(0, _Block())
before = _rss()
import numpy as np
from stream.backends import open_backend
backend = open_backend("onnxruntime", sys.argv[1])
backend.predict(np.random.default_rng(0).standard_normal((150, 384)).astype(np.float32), "hello there my friend")
after = _rss()
print(json.dumps({"rss_before_mb": before, "rss_after_mb": after, "added_mb": after - before,
                  "torch_imported": any(m.split(".")[0] in ("torch", "transformers") for m in sys.modules)}))
"""


def measure_memory(onnx_dir: Path) -> dict:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(onnx_dir)], capture_output=True, text=True,
                         env=env, timeout=300)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(rep: Report) -> str:
    from bench.machine import markdown_lines

    m, s = rep.machine, rep.setup
    lines = [f"# Emotion backends: {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['started']))}", "",
             *markdown_lines({**m, "load_average_end": s.get("load_average_end")}),
             f"Model: {s['model']} (d_model {s['d_model']}, encoder {s['encoder']}); ONNX: {s['onnx']}",
             f"Inputs: {s['frames']} speech frames + a {s['tokens']}-token transcript per utterance; "
             f"{s['runs']} timed runs after {s['warmup']} warm-up, interleaved; "
             f"CPU threads (torch and onnxruntime): {s['threads']}", "",
             "| backend | batch | median ms | p95 ms | mean ms | speed-up vs torch eager | max abs dprob vs torch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for t in rep.timings:
        up = f"{t.speedup_vs_torch:.2f}x" if t.speedup_vs_torch else "-"
        diff = f"{t.max_abs_diff_vs_torch:.1e}" if t.max_abs_diff_vs_torch is not None else "-"
        lines.append(f"| {t.backend} | {t.batch} | {t.median_ms:.2f} | {t.p95_ms:.2f} | {t.mean_ms:.2f} "
                     f"| {up} | {diff} |")
    if rep.memory:
        mem = rep.memory
        lines += ["", "Memory (fresh process, torch/transformers imports blocked): "
                  + (f"importing the onnxruntime backend and running one utterance added {mem['added_mb']:.0f} MB "
                     f"RSS ({mem['rss_before_mb']:.0f} -> {mem['rss_after_mb']:.0f} MB); torch imported: "
                     f"{mem['torch_imported']}" if "added_mb" in mem else mem.get("error", "?"))]
    lines += [f"- {n}" for n in rep.notes]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    from fdrl_core.checkpoint import read_config

    notes: list[str] = []
    started = time.time()
    info = machine()
    args.threads = args.threads or info.get("usable_cpus") or os.cpu_count()
    backends, model, onnx_dir = _open_backends(args, notes)
    cfg = read_config(model)
    ort_backend = next(b for b in backends if b.name == "onnxruntime")
    text = text_with_tokens(ort_backend.tokenizer, args.tokens)
    rng = np.random.default_rng(0)
    setup = {"started": started, "model": str(model), "onnx": str(onnx_dir), "d_model": cfg.d_model,
             "encoder": cfg.encoder, "frames": args.frames, "tokens": args.tokens, "text": text, "runs": args.runs,
             "warmup": args.warmup, "threads": args.threads,
             "ort_providers": list(ort_backend.providers)}
    rep = Report(info, setup, notes=notes)
    for batch in [int(b) for b in str(args.batches).split(",") if b.strip()]:
        frames = [rng.standard_normal((args.frames, cfg.speech_dim)).astype(np.float32) for _ in range(batch)]
        inputs = (frames, [text] * batch)
        outputs = {b.name: b.predict_batch(*inputs) for b in backends}
        times = _time_interleaved(backends, inputs, args.runs, args.warmup)
        torch_median = float(np.median(times["torch"]))
        for b in backends:
            ts = np.asarray(times[b.name]) * 1000
            diff = max(abs(x.probs[k] - y.probs[k]) for x, y in zip(outputs[b.name], outputs["torch"]) for k in x.probs)
            rep.timings.append(Timing(b.name, batch, float(np.median(ts)), float(np.percentile(ts, 95)),
                                      float(ts.mean()), len(ts), torch_median * 1000 / float(np.median(ts)),
                                      None if b.name == "torch" else diff))
    setup["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if not args.no_memory:
        rep.memory = measure_memory(onnx_dir)

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    md = markdown(rep)
    (args.out / f"backends-{stamp}.json").write_text(json.dumps(asdict(rep), indent=2) + "\n")
    (args.out / f"backends-{stamp}.md").write_text(md)
    print(md)
    print(f"wrote {args.out / f'backends-{stamp}.json'} and .md")
    return 0
