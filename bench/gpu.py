"""The edge GPU path, end to end on this machine's NVIDIA GPU, checked against the CPU path.

1. Speech (CTranslate2 CUDA, float16): the bundled demo's utterances transcribed on the GPU and on the CPU
   (int8): per-utterance encoder / decoder / whole-pass latency, transcripts compared, the Whisper frames
   FDRL uses compared (cosine), encoder+decoder throughput at batch 1 and 8.
2. Emotion (the same Whisper frames and transcripts into every backend): onnxruntime CUDA, the onnxruntime
   TensorRT provider and a TensorRT engine (FP16) where present, each against onnxruntime CPU: labels
   must be equal and the largest probability difference within tolerance; latency and throughput at
   batch 1 and 8.
3. Device memory (NVML when nvidia-ml-py is installed, else nvidia-smi): the GPU's total and used memory
   and this process's share after each stage.

What is missing is skipped with the reason (no CUDA GPU, CPU-only CTranslate2 or onnxruntime, no TensorRT),
never guessed. Exit status: 0 every stage that could run passed; 1 a stage failed or the GPU disagrees with
the CPU; 2 bad arguments, or no CUDA GPU at all (nothing to measure). Results: <out>/gpu-<time>.json and .md
(and gpu-latest.*). Sized to finish in under 8 minutes on a datacenter GPU (--budget-s bounds the optional
TensorRT engine build).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.common import DEFAULT_OUT, summary, write_results
from bench.windows import edit_distance

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# max |dprob| allowed against onnxruntime CPU on identical inputs; labels must always be equal
TOLERANCE = {"onnxruntime-cuda": 1e-2, "onnxruntime-tensorrt": 5e-2, "tensorrt": 5e-2}
TRT_BUILD_MIN_S = 180  # do not start an engine build with less of the budget left


def add_arguments(p) -> None:
    from stream.sources import DEMO_WAV

    p.add_argument("--model", type=Path, default=None,
                   help="FDRL checkpoint or ONNX export folder (default: $FDRL_MODEL, else the bundled demo model)")
    p.add_argument("--audio", type=Path, default=DEMO_WAV, help="speech file (default: the bundled demo)")
    p.add_argument("--segments", type=Path, default=None,
                   help="JSON with utterances [{start, end}] in seconds (default: <audio>.json when present, "
                        "else the whole file in 10 s pieces)")
    p.add_argument("--asr-model", default=None, help="CTranslate2 Whisper folder (default: bundled tiny.en)")
    p.add_argument("--compute-type", default="float16", help="CTranslate2 compute type on the GPU (default float16)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per measurement (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--engine", type=Path, default=None,
                   help="TensorRT engine to time (default: reuse or build an FP16 engine in the engine cache)")
    p.add_argument("--no-engine-build", action="store_true", help="time an existing TensorRT engine only")
    p.add_argument("--skip", default="", help="comma list of stages to skip: asr, emotion, tensorrt")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="wall-clock budget; optional work (an engine build) is skipped when it would overrun "
                        "(default 420)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default ./{DEFAULT_OUT})")


def check_args(args) -> None:
    """ValueError (exit 2) for arguments that cannot work."""
    if args.runs < 1 or args.warmup < 0:
        raise ValueError("--runs must be >= 1 and --warmup >= 0")
    if args.budget_s <= 0:
        raise ValueError("--budget-s must be positive")
    unknown = set(skips(args)) - {"asr", "emotion", "tensorrt"}
    if unknown:
        raise ValueError(f"--skip: unknown stage(s) {', '.join(sorted(unknown))} (asr, emotion, tensorrt)")
    if not Path(args.audio).is_file():
        raise ValueError(f"--audio {args.audio}: no such file")
    if args.engine is not None and not Path(args.engine).is_file():
        raise ValueError(f"--engine {args.engine}: no such file")


def skips(args) -> list[str]:
    return [s.strip() for s in str(args.skip or "").split(",") if s.strip()]


# ------------------------------------------------------------------------------------------ what is here


@dataclass
class GpuProbe:
    gpu_name: str | None = None
    driver: str | None = None
    memory_total_mb: float | None = None
    ct2_cuda_devices: int = 0
    ct2_version: str | None = None
    ort_providers: list[str] = field(default_factory=list)
    ort_version: str | None = None
    tensorrt: str | None = None
    nvinfer: str | None = None  # the TensorRT library the onnxruntime TensorRT provider dlopens, when loadable
    memory_source: str | None = None  # "nvml" | "nvidia-smi" | None
    notes: list[str] = field(default_factory=list)

    @property
    def any_gpu(self) -> bool:
        return bool(self.gpu_name or self.ct2_cuda_devices or "CUDAExecutionProvider" in self.ort_providers)

    def skip_reason(self, stage: str) -> str | None:
        """Why `stage` cannot run here, or None."""
        if stage == "asr" and self.ct2_cuda_devices < 1:
            if self.ct2_version is None:
                return "CTranslate2 is not installed"
            return (f"CTranslate2 {self.ct2_version} sees no CUDA device (a CPU-only build, no GPU, or its CUDA "
                    "12 libraries cuBLAS/cuDNN 9 are missing: pip install nvidia-cublas-cu12 'nvidia-cudnn-cu12==9.*')")
        if stage == "onnxruntime-cuda" and "CUDAExecutionProvider" not in self.ort_providers:
            return (f"onnxruntime {self.ort_version or '(not installed)'} has no CUDAExecutionProvider "
                    "(pip uninstall onnxruntime && pip install onnxruntime-gpu)")
        if stage == "onnxruntime-tensorrt":
            if "TensorrtExecutionProvider" not in self.ort_providers:
                return "onnxruntime has no TensorrtExecutionProvider (onnxruntime-gpu with TensorRT, + TensorRT libs)"
            if self.nvinfer is None:  # onnxruntime-gpu lists the provider whether or not TensorRT is installed
                return "onnxruntime lists TensorrtExecutionProvider but TensorRT's libnvinfer.so.10 does not load"
        if stage == "tensorrt" and self.tensorrt is None:
            from fdrl_core.engine_cache import TENSORRT_HINT

            return f"TensorRT is not installed ({TENSORRT_HINT})"
        return None


def probe(smi=None, nvml=None) -> GpuProbe:
    """What this machine offers; every probe failure becomes a note, never an exception."""
    found = GpuProbe()
    try:
        import ctranslate2

        found.ct2_version = ctranslate2.__version__
        found.ct2_cuda_devices = int(ctranslate2.get_cuda_device_count())
    except Exception as e:  # a CUDA driver that fails to load counts as no device
        found.notes.append(f"CTranslate2: {type(e).__name__}: {e}")
    try:
        import onnxruntime as ort

        found.ort_version = ort.__version__
        found.ort_providers = list(ort.get_available_providers())
    except Exception as e:
        found.notes.append(f"onnxruntime: {type(e).__name__}: {e}")
    try:
        import tensorrt

        found.tensorrt = str(tensorrt.__version__)
    except Exception as e:
        found.notes.append(f"TensorRT: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    found.nvinfer = _loadable(NVINFER_LIBS)
    mem = DeviceMemory(smi=smi, nvml=nvml)
    info = mem.device()
    if info:
        found.gpu_name, found.driver, found.memory_total_mb = info["name"], info["driver"], info["total_mb"]
        found.memory_source = mem.source
    elif mem.error:
        found.notes.append(mem.error)
    return found


NVINFER_LIBS = ("libnvinfer.so.10", "libnvinfer.so")


def _loadable(names) -> str | None:
    """The first of `names` the dynamic loader can open (after `import tensorrt`, whose wheel preloads its
    libraries), or None."""
    import ctypes

    for name in names:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return None


class DeviceMemory:
    """GPU 0's memory and this process's share, from NVML (nvidia-ml-py) or nvidia-smi; None when neither."""

    def __init__(self, smi=None, nvml=None):
        self.source: str | None = None
        self.error: str | None = None
        self._smi = smi or _nvidia_smi
        self._nvml = nvml or None  # nvml=False: do not use NVML (nvidia-smi only)
        self._handle = None
        if nvml is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as e:  # not installed, or no driver
                self.error = f"NVML unavailable ({type(e).__name__})"
        if self._nvml is not None:
            try:
                self._handle = self._nvml.nvmlDeviceGetHandleByIndex(0)
                self.source = "nvml"
            except Exception as e:
                self.error = f"NVML: {e}"
                self._nvml = None

    def device(self) -> dict | None:
        if self._nvml is not None:
            n = self._nvml
            name = n.nvmlDeviceGetName(self._handle)
            info = n.nvmlDeviceGetMemoryInfo(self._handle)
            driver = n.nvmlSystemGetDriverVersion()
            return {"name": name.decode() if isinstance(name, bytes) else str(name),
                    "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
                    "total_mb": info.total / 2**20, "used_mb": info.used / 2**20}
        rows = self._smi(["--query-gpu=name,driver_version,memory.total,memory.used", "--format=csv,noheader,nounits"])
        if not rows:
            self.error = self.error or "no NVIDIA GPU found (no NVML, nvidia-smi absent or it found no device)"
            return None
        name, driver, total, used = (x.strip() for x in rows[0].split(",")[:4])
        self.source = "nvidia-smi"
        return {"name": name, "driver": driver, "total_mb": float(total), "used_mb": float(used)}

    def process_mb(self, pid: int | None = None) -> float | None:
        """This process's device memory (None when the driver does not say, e.g. in some containers)."""
        pid = pid or os.getpid()
        if self._nvml is not None:
            try:
                for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                    if proc.pid == pid and proc.usedGpuMemory is not None:
                        return proc.usedGpuMemory / 2**20
            except Exception:
                return None
            return None
        for row in self._smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]) or []:
            parts = [x.strip() for x in row.split(",")]
            if len(parts) >= 2 and parts[0] == str(pid) and parts[1].replace(".", "").isdigit():
                return float(parts[1])
        return None

    def snapshot(self, label: str) -> dict:
        dev = self.device() or {}
        return {"stage": label, "device_used_mb": dev.get("used_mb"), "process_mb": self.process_mb()}


def _nvidia_smi(args: list[str]) -> list[str] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--id=0", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [line for line in out.stdout.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ comparisons


def compare_predictions(reference, other) -> dict:
    """Labels and probabilities of two backends on the same inputs (lists of EmotionResult)."""
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference results but {len(other)} to compare")
    mismatches = [i for i, (a, b) in enumerate(zip(reference, other)) if a.label != b.label]
    diffs = [abs(a.probs[k] - b.probs.get(k, float("nan"))) for a, b in zip(reference, other) for k in a.probs]
    worst = max(diffs) if diffs else 0.0
    return {"items": len(reference), "labels_equal": not mismatches, "label_mismatches": mismatches,
            "max_prob_diff": float(worst) if np.isfinite(worst) else float("inf")}


def comparison_ok(cmp: dict, tolerance: float) -> bool:
    return cmp["labels_equal"] and cmp["max_prob_diff"] <= tolerance


def normalize_text(text: str) -> str:
    from stream.asr import normalize

    return normalize(text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / reference length (0 when both are empty)."""
    ref, hyp = normalize_text(reference).split(), normalize_text(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        return float("nan")
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom else float("nan")


def timed(fn, runs: int, warmup: int) -> dict:
    """summary (median/p95/mean ms) of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return summary(times)


def throughput(stats: dict, batch: int) -> float | None:
    """Items per second from a batch's median latency."""
    return None if not stats.get("median") else round(batch * 1000.0 / stats["median"], 1)


# ------------------------------------------------------------------------------------------ the report


@dataclass
class Stage:
    name: str
    status: str = "skipped"  # ok | failed | skipped
    reason: str | None = None
    metrics: dict = field(default_factory=dict)


@dataclass
class Report:
    machine: dict
    probe: dict
    setup: dict
    stages: list[Stage] = field(default_factory=list)
    memory: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        self.stages.append(Stage(name))
        return self.stages[-1]


def exit_code(report: Report, any_gpu: bool) -> int:
    if any(s.status == "failed" for s in report.stages):
        return EXIT_FAILED
    if not any_gpu:
        return EXIT_USAGE
    return EXIT_OK


def markdown(rep: Report) -> str:
    from bench.machine import markdown_lines

    p = rep.probe
    lines = [f"# GPU path: {time.strftime('%Y-%m-%d %H:%M', time.localtime(rep.setup['started']))}", "",
             *markdown_lines(rep.machine),
             f"GPU: {p.get('gpu_name') or 'none found'} (driver {p.get('driver') or '-'}, "
             f"{(p.get('memory_total_mb') or 0) / 1024:.0f} GiB); CTranslate2 {p.get('ct2_version') or '-'} sees "
             f"{p.get('ct2_cuda_devices', 0)} CUDA device(s); onnxruntime {p.get('ort_version') or '-'} providers: "
             f"{', '.join(p.get('ort_providers') or []) or '-'}; TensorRT {p.get('tensorrt') or 'not installed'}",
             f"Model: {rep.setup.get('model')}; audio: {rep.setup.get('audio')} ({rep.setup.get('utterances')} "
             f"utterances); {rep.setup.get('runs')} timed runs after {rep.setup.get('warmup')} warm-up", "",
             "| stage | status | detail |", "|---|---|---|"]
    for s in rep.stages:
        lines.append(f"| {s.name} | {s.status} | {s.reason or _headline(s)} |")
    for s in rep.stages:
        if s.status == "skipped" or not s.metrics:
            continue
        lines += ["", f"## {s.name}", ""]
        lat = s.metrics.get("latency_ms")
        if lat:
            lines += ["| what | median ms | p95 ms | mean ms | n | throughput /s |", "|---|---:|---:|---:|---:|---:|"]
            for what, st in lat.items():
                tp = s.metrics.get("throughput", {}).get(what)
                lines.append(f"| {what} | {_f(st.get('median'))} | {_f(st.get('p95'))} | {_f(st.get('mean'))} "
                             f"| {st.get('n')} | {_f(tp, 1)} |")
        for key in ("vs_cpu", "end_to_end_vs_cpu", "transcripts", "frames_cosine_min", "build_s", "engine",
                    "providers", "device"):
            if key in s.metrics:
                lines.append(f"- {key}: {json.dumps(s.metrics[key], default=str)}")
    if any(m.get("device_used_mb") is not None or m.get("process_mb") is not None for m in rep.memory):
        lines += ["", "## Device memory", "", "| after | device used MB | this process MB |", "|---|---:|---:|"]
        lines += [f"| {m['stage']} | {_f(m.get('device_used_mb'))} | {_f(m.get('process_mb'))} |" for m in rep.memory]
    lines += [f"- {n}" for n in rep.notes]
    return "\n".join(lines) + "\n"


def _headline(s: Stage) -> str:
    cmp = s.metrics.get("vs_cpu")
    lat = s.metrics.get("latency_ms", {})
    first = next(iter(lat.items()), None)
    bits = []
    if first:
        bits.append(f"{first[0]} median {_f(first[1].get('median'))} ms")
    if cmp:
        bits.append(f"labels equal: {cmp['labels_equal']}, max |dprob| {cmp['max_prob_diff']:.1e}")
    if "transcripts" in s.metrics:
        t = s.metrics["transcripts"]
        bits.append(f"transcripts identical {t['identical']}/{t['items']}, mean WER vs CPU {t['mean_wer']:.3f}")
    return "; ".join(bits) or "-"


def _f(x, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


# ------------------------------------------------------------------------------------------ inputs


def load_utterances(audio: Path, segments: Path | None) -> tuple[list[np.ndarray], list[str]]:
    """Audio pieces to transcribe and their reference text (may be empty), 16 kHz float32."""
    from fdrl_core.audio import SAMPLE_RATE, load_audio

    wav = load_audio(audio)
    seg_file = segments or Path(audio).with_suffix(".json")
    pieces, texts = [], []
    if seg_file.is_file():
        meta = json.loads(seg_file.read_text())
        for u in meta.get("utterances", meta if isinstance(meta, list) else []):
            a, b = int(float(u["start"]) * SAMPLE_RATE), int(float(u["end"]) * SAMPLE_RATE)
            a, b = max(0, a - SAMPLE_RATE // 5), min(len(wav), b + SAMPLE_RATE // 5)  # VAD-like padding
            if b > a:
                pieces.append(wav[a:b])
                texts.append(str(u.get("text", "")))
    if not pieces:
        step = 10 * SAMPLE_RATE
        pieces = [wav[i:i + step] for i in range(0, len(wav), step) if len(wav[i:i + step]) > SAMPLE_RATE // 2]
        texts = [""] * len(pieces)
    if not pieces:
        raise ValueError(f"{audio}: no audio to transcribe")
    return pieces, texts


def _batch_of(items: list, n: int) -> list:
    return [items[i % len(items)] for i in range(n)]


# ------------------------------------------------------------------------------------------ stages


def run_asr(rep: Report, args, found: GpuProbe, pieces, texts, memory: DeviceMemory) -> tuple[list, list | None]:
    """CTranslate2 CUDA vs CPU on the utterances; returns (cpu hypotheses, gpu hypotheses) or None."""
    from stream.asr import AsrConfig, Recognizer

    st = rep.stage("asr (CTranslate2 CUDA)")
    cpu = Recognizer(AsrConfig(model=args.asr_model, device="cpu", compute_type="int8"))
    cpu_hyps = [cpu.transcribe(p) for p in pieces]
    why = found.skip_reason("asr")
    if why:
        st.reason = why
        return cpu_hyps, None
    gpu = Recognizer(AsrConfig(model=args.asr_model, device="cuda", compute_type=args.compute_type))
    rep.memory.append(memory.snapshot("Whisper loaded on the GPU"))
    for p in pieces[: args.warmup]:
        gpu.transcribe(p)
    runs = max(1, args.runs // max(1, len(pieces)))
    enc, dec, total = [], [], []
    gpu_hyps = []
    for r in range(runs):
        for p in pieces:
            t0 = time.perf_counter()
            h = gpu.transcribe(p)
            total.append((time.perf_counter() - t0) * 1000)
            enc.append(h.encode_ms)
            dec.append(h.decode_ms)
            if r == 0:
                gpu_hyps.append(h)
    cpu_total = [h.encode_ms + h.decode_ms for h in cpu_hyps]
    wers = [word_error_rate(c.text, g.text) for c, g in zip(cpu_hyps, gpu_hyps)]
    cos = [cosine(c.frames, g.frames) for c, g in zip(cpu_hyps, gpu_hyps)]
    lat = {"whole pass (encode + decode + frames to host)": summary(total), "encoder": summary(enc),
           "decoder": summary(dec), "CPU int8 whole pass (one run)": summary(cpu_total)}
    tput = {}
    for batch in (1, 8):
        chunk = _batch_of(pieces, batch)

        def step(chunk=chunk):
            out = gpu.frontend.encode(chunk)
            gpu.whisper.model.generate(out, [gpu.prompt] * len(chunk), beam_size=1, max_length=96)

        key = f"encode + greedy decode, batch {batch}"
        lat[key] = timed(step, max(3, args.runs // 4), 1)
        tput[key] = throughput(lat[key], batch)
    st.metrics = {"latency_ms": lat, "throughput": tput, "device": f"cuda {args.compute_type}",
                  "transcripts": {"items": len(pieces), "identical": sum(w == 0 for w in wers),
                                  "mean_wer": float(np.mean(wers)), "gpu": [h.text for h in gpu_hyps],
                                  "cpu": [h.text for h in cpu_hyps], "reference": texts},
                  "frames_cosine_min": float(np.nanmin(cos)) if cos else None}
    # the frames FDRL gets must be the same features: fp16 GPU vs int8 CPU differ a little, never in kind
    bad = [i for i, (c, g, x) in enumerate(zip(cpu_hyps, gpu_hyps, cos)) if c.frames.shape != g.frames.shape or x < 0.9]
    if bad:
        st.status, st.reason = "failed", f"GPU Whisper frames differ from the CPU's for utterances {bad}"
    else:
        st.status = "ok"
    rep.memory.append(memory.snapshot("ASR stage"))
    return cpu_hyps, gpu_hyps


def _emotion_inputs(cpu_hyps, pieces, texts, model_speech_dim: int):
    frames = [h.frames for h in cpu_hyps] if cpu_hyps else [
        np.random.default_rng(i).standard_normal((max(1, len(p) // 320), model_speech_dim)).astype(np.float32)
        for i, p in enumerate(pieces)]
    words = [h.usable_text or "" for h in cpu_hyps] if cpu_hyps else list(texts)
    return frames, words


def time_backend(backend, frames, texts, runs: int, warmup: int) -> tuple[dict, dict]:
    lat, tput = {}, {}
    for batch in (1, 8):
        f, t = _batch_of(frames, batch), _batch_of(texts, batch)
        key = f"batch {batch}"
        lat[key] = timed(lambda f=f, t=t: backend.predict_batch(f, t), runs, warmup)
        tput[key] = throughput(lat[key], batch)
    return lat, tput


def run_emotion(rep: Report, args, found: GpuProbe, onnx_dir: Path, frames, texts, memory: DeviceMemory,
                deadline: float, gpu_hyps=None) -> None:
    """Every emotion backend on the same inputs (the CPU's Whisper frames and transcripts) against
    onnxruntime CPU; with `gpu_hyps`, also the whole GPU pipeline's labels (GPU frames + GPU text)."""
    from stream.backends import BackendError, OnnxRuntimeBackend
    cpu = OnnxRuntimeBackend(onnx_dir, device="cpu")
    reference = cpu.predict_batch(frames, texts)
    rep.notes.append(f"emotion reference: onnxruntime CPU on {len(frames)} utterances "
                     f"(labels {[r.label for r in reference]})")

    candidates = emotion_candidates(Path(args.out).expanduser(), _trt_ep_shapes(
        cpu.speech_dim, cpu.sidecar.max_speech_frames, cpu.sidecar.max_text_tokens))
    for name, providers in candidates:
        st = rep.stage(name)
        why = found.skip_reason(name)
        if why:
            st.reason = why
            continue
        try:
            t0 = time.perf_counter()
            backend = OnnxRuntimeBackend(onnx_dir, providers=providers)
            load_s = time.perf_counter() - t0
            wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
            if backend.providers[0] != wanted:
                raise BackendError(f"onnxruntime did not take {wanted} (session providers: {backend.providers})")
            got = backend.predict_batch(frames, texts)
            cmp = compare_predictions(reference, got)
            lat, tput = time_backend(backend, frames, texts, args.runs, args.warmup)
            st.metrics = {"latency_ms": lat, "throughput": tput, "vs_cpu": cmp, "providers": list(backend.providers),
                          "load_s": round(load_s, 2)}
            if gpu_hyps and name == "onnxruntime-cuda":  # informative: fp16 ASR may change a word, not fail
                whole = backend.predict_batch([h.frames for h in gpu_hyps], [h.usable_text or "" for h in gpu_hyps])
                st.metrics["end_to_end_vs_cpu"] = compare_predictions(reference, whole)
            ok = comparison_ok(cmp, TOLERANCE[name])
            st.status = "ok" if ok else "failed"
            if not ok:
                st.reason = (f"differs from onnxruntime CPU: labels equal {cmp['labels_equal']}, max |dprob| "
                             f"{cmp['max_prob_diff']:.2e} > {TOLERANCE[name]:g}")
            rep.memory.append(memory.snapshot(name))
            del backend
        except Exception as e:  # one stage failing must not hide the others
            st.status, st.reason = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    st = rep.stage("tensorrt")
    why = found.skip_reason("tensorrt") or ("skipped by --skip" if "tensorrt" in skips(args) else None)
    if why:
        st.reason = why
        return
    try:
        engine, build_s = _engine(args, onnx_dir, deadline)
        if engine is None:
            st.reason = build_s
            return
        from stream.backends import TensorRTBackend

        backend = TensorRTBackend(engine)
        got = backend.predict_batch(frames, texts)
        cmp = compare_predictions(reference, got)
        lat, tput = time_backend(backend, frames, texts, args.runs, args.warmup)
        st.metrics = {"latency_ms": lat, "throughput": tput, "vs_cpu": cmp, "engine": str(engine),
                      "build_s": build_s, "precision": backend.precision}
        ok = comparison_ok(cmp, TOLERANCE["tensorrt"])
        st.status = "ok" if ok else "failed"
        if not ok:
            st.reason = (f"differs from onnxruntime CPU: labels equal {cmp['labels_equal']}, max |dprob| "
                         f"{cmp['max_prob_diff']:.2e} > {TOLERANCE['tensorrt']:g}")
        rep.memory.append(memory.snapshot("TensorRT engine"))
    except Exception as e:
        st.status, st.reason = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def emotion_candidates(out: Path, shapes: dict) -> list[tuple[str, list]]:
    """(stage name, onnxruntime providers) for the GPU emotion stages."""
    return [
        ("onnxruntime-cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        ("onnxruntime-tensorrt", [("TensorrtExecutionProvider", {
            "trt_fp16_enable": True, "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(out / "ort-trt-cache"), **shapes}),
            "CUDAExecutionProvider", "CPUExecutionProvider"]),
    ]


def _trt_ep_shapes(dim: int, max_frames: int, max_tokens: int) -> dict:
    """One dynamic-shape profile for the onnxruntime TensorRT provider (else it rebuilds per shape)."""
    def spec(b, s, t):
        return f"speech:{b}x{s}x{dim},speech_mask:{b}x{s},input_ids:{b}x{t},attention_mask:{b}x{t}"

    return {"trt_profile_min_shapes": spec(1, 1, 1), "trt_profile_opt_shapes": spec(1, 150, 16),
            "trt_profile_max_shapes": spec(8, max_frames, max_tokens)}


def _engine(args, onnx_dir: Path, deadline: float):
    """(engine path, build seconds) or (None, why not)."""
    if args.engine:
        return Path(args.engine), None
    from export.ensure_engine import ensure_engine
    from fdrl_core.engine_cache import decide, default_cache_dir, detect_device
    from fdrl_core.export_format import OnnxSidecar

    device = detect_device()
    decision = decide(default_cache_dir(), OnnxSidecar.load(onnx_dir).onnx_sha256, device, "fp16")
    if decision.action == "use":
        return decision.engine, None
    if args.no_engine_build:
        return None, "no cached FP16 engine for this GPU and --no-engine-build was given"
    left = deadline - time.monotonic()
    if left < TRT_BUILD_MIN_S:
        return None, f"an engine build would overrun --budget-s ({left:.0f} s left); build it with python -m export trt"
    t0 = time.perf_counter()
    code, msg = ensure_engine(onnx_dir, fp16=True, device=device)
    if code != 0:
        raise RuntimeError(msg)
    return Path(msg), round(time.perf_counter() - t0, 1)


# ------------------------------------------------------------------------------------------ main


def run(args) -> int:
    from bench.machine import describe, load_average
    from fdrl_core.assets import default_model_path
    from stream.backends import ONNX_SUBDIR, BackendError, model_kind

    try:  # usage and input errors: one line, exit 2
        check_args(args)
        model = Path(args.model) if args.model else default_model_path()
        kind = model_kind(model)
        onnx_dir = model / ONNX_SUBDIR if kind == "checkpoint" else model
        if kind == "engine" or not (onnx_dir / "fdrl.onnx").is_file():
            raise ValueError(f"{model}: bench gpu needs an ONNX export folder or a checkpoint with one in "
                             f"{ONNX_SUBDIR}/")
        pieces, texts = load_utterances(args.audio, args.segments)
    except (ValueError, BackendError) as e:
        print(f"bench gpu: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    started, deadline = time.time(), time.monotonic() + args.budget_s
    found = probe()
    rep = Report(describe(), asdict(found),
                 {"started": started, "model": str(model), "onnx": str(onnx_dir), "audio": str(args.audio),
                  "utterances": len(pieces), "runs": args.runs, "warmup": args.warmup,
                  "command": getattr(args, "command_line", "python -m bench gpu")})
    memory = DeviceMemory()
    if not found.any_gpu:
        rep.notes.append("no CUDA GPU here: " + "; ".join(
            r for r in (found.skip_reason("asr"), found.skip_reason("onnxruntime-cuda")) if r))
    rep.memory.append(memory.snapshot("start"))
    cpu_hyps = gpu_hyps = None
    if "asr" in skips(args):
        rep.stage("asr (CTranslate2 CUDA)").reason = "skipped by --skip"
    elif found.any_gpu:
        try:
            cpu_hyps, gpu_hyps = run_asr(rep, args, found, pieces, texts, memory)
        except Exception as e:
            st = rep.stage("asr (CTranslate2 CUDA)")
            st.status, st.reason = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    else:
        rep.stage("asr (CTranslate2 CUDA)").reason = found.skip_reason("asr")
    if "emotion" in skips(args):
        rep.stage("onnxruntime-cuda").reason = "skipped by --skip"
    elif found.any_gpu:
        from fdrl_core.export_format import OnnxSidecar

        frames, words = _emotion_inputs(cpu_hyps, pieces, texts, OnnxSidecar.load(onnx_dir).speech_dim)
        run_emotion(rep, args, found, onnx_dir, frames, words, memory, deadline, gpu_hyps)
    else:
        for name in ("onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt"):
            rep.stage(name).reason = found.skip_reason(name) or "no CUDA GPU here"
    rep.machine["load_average_end"] = load_average()
    rep.setup["seconds"] = round(time.time() - started, 1)
    md = markdown(rep)
    js, mdp = write_results(Path(args.out).expanduser(), "gpu", started, asdict(rep), md)
    print(md)
    print(f"wrote {js} and {mdp.name}")
    code = exit_code(rep, found.any_gpu)
    if code == EXIT_USAGE:
        print("bench gpu: no CUDA GPU here, nothing was measured (see the skipped stages above)")
    return code
