"""Is the ONNX export the trained model? onnx.checker, a TensorRT 10.3 op lint, then parity against
PyTorch (MiniLM + FDRL, the torch backend's path) with onnxruntime on random inputs at edge shapes and
on real features from spoken utterances (espeak-ng -> Whisper encoder frames).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fdrl_core.export_format import ONNX_FILE, OnnxSidecar

ATOL = 1e-4  # on probabilities
SENTENCES = (  # (text, espeak-ng options): different lengths, voices and moods
    ("I can't believe you did this to me again!", ["-s", "190", "-p", "70"]),
    ("Thank you so much, this is the best day of my life.", ["-s", "175", "-p", "60"]),
    ("I miss her every single day and nothing helps.", ["-s", "120", "-p", "30"]),
    ("The meeting is scheduled for three o'clock on Tuesday.", ["-s", "160", "-p", "50"]),
    ("Okay.", ["-s", "150", "-p", "45"]),
)
# (name, batch, speech frames, text tokens, how): the shapes the run-time sees, edges included
RANDOM_CASES = (
    ("batch 1, 3 s, 12 tokens", 1, 150, 12, "full"),
    ("batch 8, ragged", 8, 200, 20, "ragged"),
    ("long speech, 1500 frames", 1, 1500, 24, "full"),
    ("one-token text", 2, 60, 1, "full"),
    ("empty text", 2, 80, 6, "empty"),
    ("batch 8, mixed empty text", 8, 120, 10, "mixed"),
    ("one speech frame", 1, 1, 5, "full"),
)


class CheckError(RuntimeError):
    """The export cannot be checked at all (missing files, no espeak-ng); one line for the CLI."""


@dataclass
class CaseResult:
    name: str
    shape: str
    max_abs_diff: float
    argmax_agree: int
    items: int
    real: bool = False
    finite: bool = True

    def ok(self, atol: float) -> bool:
        return self.finite and self.max_abs_diff <= atol and (not self.real or self.argmax_agree == self.items)


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class TorchReference:
    """MiniLM token states + FDRLInference, exactly what TextFrontend + FDRL compute in the torch backend."""

    def __init__(self, checkpoint: Path, text_model: str | Path | None):
        from fdrl_core.assets import text_model_dir
        from fdrl_core.checkpoint import load_checkpoint
        from fdrl_core.model import FDRLInference
        from fdrl_core.text_frontend import load_text_encoder

        self.head = FDRLInference(load_checkpoint(checkpoint)).eval()
        self.encoder = load_text_encoder(text_model_dir(text_model))

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids, am = torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])
            states = self.encoder(input_ids=ids, attention_mask=am).last_hidden_state
            probs, _ = self.head(torch.from_numpy(feeds["speech"]), torch.from_numpy(feeds["speech_mask"]).bool(),
                                 states, am.bool())
        return probs.numpy()


def random_feeds(batch: int, speech_t: int, text_t: int, how: str, dim: int = 384, vocab: int = 30522,
                 seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    speech = rng.standard_normal((batch, speech_t, dim)).astype(np.float32)
    speech_mask = np.ones((batch, speech_t), np.int64)
    ids = rng.integers(1000, vocab, (batch, text_t)).astype(np.int64)
    ids[:, 0] = 101  # [CLS]
    attention_mask = np.ones((batch, text_t), np.int64)
    if how in ("ragged", "mixed"):
        for i in range(1, batch):
            speech_mask[i, rng.integers(1, speech_t):] = 0
            attention_mask[i, rng.integers(1, text_t + 1):] = 0
    if how == "empty":
        attention_mask[:] = 0
    if how == "mixed":
        attention_mask[::2] = 0
    ids[attention_mask == 0] = 0
    return {"speech": speech, "speech_mask": speech_mask, "input_ids": ids, "attention_mask": attention_mask}


def synthesize(folder: Path, sentences=SENTENCES) -> list[tuple[str, Path]]:
    """Spoken test utterances with espeak-ng (installed by scripts/setup.sh)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise CheckError("espeak-ng is not installed (apt-get install espeak-ng), so the real-utterance parity "
                         "cannot run; pass --skip-real to check random inputs only")
    out = []
    for i, (text, opts) in enumerate(sentences):
        wav = folder / f"utt{i}.wav"
        subprocess.run([exe, *opts, "-w", str(wav), text], check=True, capture_output=True)
        out.append((text, wav))
    return out


def pad_batch(frames: list[np.ndarray], ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    t = max(1, max(len(f) for f in frames))
    speech = np.zeros((len(frames), t, frames[0].shape[-1]), np.float32)
    speech_mask = np.zeros((len(frames), t), np.int64)
    for i, f in enumerate(frames):
        speech[i, : len(f)] = f
        speech_mask[i, : len(f)] = 1
    return {"speech": speech, "speech_mask": speech_mask, "input_ids": ids, "attention_mask": mask}


def _compare(name, feeds, session, reference, real=False) -> CaseResult:
    got = session.run(["probs"], feeds)[0]
    ref = reference(feeds)
    finite = bool(np.isfinite(got).all())
    diff = float(np.abs(got - ref).max()) if finite else float("inf")
    agree = int((got.argmax(-1) == ref.argmax(-1)).sum())
    shape = "x".join(map(str, (feeds["speech"].shape[0], feeds["speech"].shape[1], feeds["input_ids"].shape[1])))
    return CaseResult(name, shape, diff, agree, len(got), real, finite)


def check_export(onnx_dir: str | Path, checkpoint: str | Path | None = None, *, atol: float = ATOL,
                 real: bool = True, whisper_model: str | None = None, log=None) -> CheckReport:
    import onnx
    import onnxruntime as ort

    from export.onnx_export import TOKENIZER_FILE, load_sidecar, onnx_sha256
    from export.trt_ops import lint_file
    from fdrl_core.checkpoint import checkpoint_hash
    from fdrl_core.packed_onnx import ready

    say = log or print
    rep = CheckReport()

    def line(msg):
        rep.lines.append(msg)
        say(msg)

    onnx_dir = Path(onnx_dir).expanduser()
    sidecar: OnnxSidecar = load_sidecar(onnx_dir)
    ckpt = Path(checkpoint).expanduser() if checkpoint else onnx_dir / sidecar.source_checkpoint  # may be relative
    onnx_dir = ready(onnx_dir, log=say)  # a packed (bundled demo) export: check its unpacked copy
    if not ckpt.is_dir():
        raise CheckError(f"checkpoint {ckpt} not found; pass --model <checkpoint folder> the graph was exported from")
    if checkpoint_hash(ckpt) != sidecar.checkpoint_sha256:
        rep.failures.append(f"{ckpt} is not the checkpoint this graph was exported from (hash differs)")
    if not (onnx_dir / TOKENIZER_FILE).is_file():
        rep.failures.append(f"{TOKENIZER_FILE} is missing next to the graph")
    sha = onnx_sha256(onnx_dir)
    if sha != sidecar.onnx_sha256:
        rep.failures.append("fdrl.onnx(.data) changed since export: sha256 differs from the sidecar")

    onnx.checker.check_model(str(onnx_dir / ONNX_FILE), full_check=True)  # the path form handles external data
    line(f"onnx.checker: OK (opset {sidecar.opset}, sha256 {sha[:16]})")
    lint = lint_file(onnx_dir / ONNX_FILE)
    for msg in lint.lines():
        line(msg)
    if not lint.ok:
        rep.failures.append("the graph uses ops or inputs TensorRT 10.3 cannot parse (see the lint above)")

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_dir / ONNX_FILE), opts, providers=["CPUExecutionProvider"])
    text_model = sidecar.text_model if sidecar.text_model and Path(sidecar.text_model).is_dir() else None
    reference = TorchReference(ckpt, text_model)

    line(f"parity vs PyTorch (onnxruntime {ort.__version__} CPU), max |dprob| must be <= {atol:g}:")
    for i, (name, b, ts, tt, how) in enumerate(RANDOM_CASES):
        feeds = random_feeds(b, ts, tt, how, sidecar.speech_dim, seed=i)
        rep.cases.append(_compare(name, feeds, session, reference))
        _print_case(rep.cases[-1], atol, line)

    if real:
        from fdrl_core.audio import load_audio
        from fdrl_core.speech_frontend import SpeechFrontend
        from fdrl_core.tokenizer import TextTokenizer

        tokenizer = TextTokenizer(onnx_dir, sidecar.max_text_tokens)
        frontend = SpeechFrontend(whisper_model)
        with tempfile.TemporaryDirectory() as tmp:
            spoken = synthesize(Path(tmp))
            frames = [frontend.frames(load_audio(wav)) for _, wav in spoken]
        texts = [t for t, _ in spoken]
        for text, f in zip(texts, frames):
            ids, mask = tokenizer([text])
            rep.cases.append(_compare(f"real: {text[:32]!r}", pad_batch([f], ids, mask), session, reference, True))
            _print_case(rep.cases[-1], atol, line)
        ids, mask = tokenizer([""])
        rep.cases.append(_compare("real, speech only (no text)", pad_batch(frames[:1], ids, mask), session,
                                  reference, True))
        _print_case(rep.cases[-1], atol, line)
        ids, mask = tokenizer(texts[:-1] + [""])
        rep.cases.append(_compare(f"real, padded batch of {len(texts)}", pad_batch(frames, ids, mask), session,
                                  reference, True))
        _print_case(rep.cases[-1], atol, line)

    worst = max(c.max_abs_diff for c in rep.cases)
    real_cases = [c for c in rep.cases if c.real]
    agree = sum(c.argmax_agree for c in real_cases), sum(c.items for c in real_cases)
    bad = [c.name for c in rep.cases if not c.ok(atol)]
    if bad:
        rep.failures.append(f"parity failed for: {', '.join(bad)}")
    line(f"max |dprob| over all cases: {worst:.2e} (tolerance {atol:g}); "
         + (f"argmax agrees on {agree[0]}/{agree[1]} real utterances" if real_cases else "real utterances skipped"))
    return rep


def _print_case(c: CaseResult, atol: float, line) -> None:
    status = "ok" if c.ok(atol) else "FAIL"
    extra = f", argmax {c.argmax_agree}/{c.items}" if c.real else ""
    nan = "" if c.finite else " (non-finite output!)"
    line(f"  {status:4} {c.name:<40} BxTsxTt={c.shape:<12} max|dp|={c.max_abs_diff:.2e}{extra}{nan}")


def main_check(args) -> int:
    rep = check_export(args.onnx, args.model, atol=args.atol, real=not args.skip_real,
                       whisper_model=args.whisper_model)
    if rep.ok:
        print("check: PASSED")
        return 0
    for f in rep.failures:
        print(f"check: FAILED: {f}", file=sys.stderr)
    return 1
