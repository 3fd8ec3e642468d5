"""One ONNX graph for everything after the Whisper encoder: MiniLM token states + the FDRL head.

Tokenisation stays outside the graph (the run-time uses `tokenizers`), so the graph takes token ids.
The dynamo exporter (torch >= 2.9 default) is used: the legacy TorchScript exporter bakes example
lengths into attention reshapes (see ../shared/notes/TRT_JETSON.md section 1). Opset 18 by default:
new enough for LayerNormalization (TensorRT's INormalizationLayer), old enough for TensorRT 10.3.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from fdrl_core.checkpoint import checkpoint_hash, read_config
from fdrl_core.export_format import INPUTS, ONNX_FILE, OUTPUTS, OnnxSidecar

MIN_OPSET, MAX_OPSET = 17, 20  # TensorRT 10.3 (JetPack 6) parses opset 9..20
DEFAULT_OPSET = 18
TOKENIZER_FILE = "tokenizer.json"

# symbolic dims, as the graph and the sidecar name them
BATCH, SPEECH_T, TEXT_T = "batch", "speech_frames", "text_tokens"
INPUT_SPECS = {
    "speech": ("float32", [BATCH, SPEECH_T, "speech_dim"]),
    "speech_mask": ("int64", [BATCH, SPEECH_T]),
    "input_ids": ("int64", [BATCH, TEXT_T]),
    "attention_mask": ("int64", [BATCH, TEXT_T]),
}


class ExportError(RuntimeError):
    """An export that cannot be done (bad checkpoint, bad option); one line for the CLI."""


@dataclass
class ExportOptions:
    opset: int = DEFAULT_OPSET
    text_model: str | None = None  # text encoder folder; default: fdrl_core.assets.text_model_dir()
    max_batch: int = 64  # upper bounds the exporter may assume; the graph itself stays dynamic
    verbose: bool = False


def graph_files(folder: str | Path) -> list[Path]:
    """The files that make up the graph: fdrl.onnx and its external data file(s), in a fixed order."""
    import onnx

    folder = Path(folder)
    graph = folder / ONNX_FILE
    model = onnx.load(str(graph), load_external_data=False)
    data = set()
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                data.add(entry.value)
    return [graph] + [folder / name for name in sorted(data)]


def onnx_sha256(folder: str | Path) -> str:
    """Identity of an exported graph: sha256 over the graph file and its weights file(s)."""
    h = hashlib.sha256()
    for path in graph_files(folder):
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def build_graph_module(checkpoint: str | Path, text_model: str | Path | None = None):
    """The torch module that is exported (and the parity reference): MiniLM + FDRLInference."""
    import torch

    from fdrl_core.assets import text_model_dir
    from fdrl_core.checkpoint import load_checkpoint
    from fdrl_core.model import FDRLInference
    from fdrl_core.text_frontend import load_text_encoder

    class FDRLGraph(torch.nn.Module):
        """speech [B,Ts,384], speech_mask [B,Ts] int64, input_ids/attention_mask [B,Tt] int64 -> probs, logits."""

        def __init__(self, text_encoder, head):
            super().__init__()
            self.text_encoder = text_encoder
            self.head = FDRLInference(head)

        def forward(self, speech, speech_mask, input_ids, attention_mask):
            states = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            # an all-zero attention mask means "no text": FDRL swaps in its learned missing-text vectors,
            # and the states are zeroed so nothing non-finite can reach them in any backend
            valid = attention_mask > 0
            states = torch.where(valid.unsqueeze(-1), states, torch.zeros_like(states))
            return self.head(speech, speech_mask > 0, states, valid)

    head = load_checkpoint(checkpoint)
    encoder = load_text_encoder(text_model_dir(text_model))
    return FDRLGraph(encoder, head).eval()


def _example_inputs(cfg, batch: int = 2, speech_t: int = 50, text_t: int = 12):
    import torch

    g = torch.Generator().manual_seed(0)
    speech = torch.randn(batch, speech_t, cfg.speech_dim, generator=g)
    speech_mask = torch.ones(batch, speech_t, dtype=torch.int64)
    speech_mask[1, speech_t // 2:] = 0
    ids = torch.randint(1000, 2000, (batch, text_t), generator=g)
    attention_mask = torch.ones(batch, text_t, dtype=torch.int64)
    attention_mask[1, text_t // 2:] = 0
    return speech, speech_mask, ids, attention_mask


def _quiet_exporter():
    """The dynamo exporter logs every stage and warns about shared axis names; keep the CLI readable."""
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx.experimental.symbolic_shapes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*axis name.*will not be used.*")
    warnings.filterwarnings("ignore", category=FutureWarning)


def export_onnx(checkpoint: str | Path, out_dir: str | Path, options: ExportOptions | None = None,
                log=None) -> OnnxSidecar:
    """Export `checkpoint` to out_dir/fdrl.onnx (+ fdrl.onnx.data, tokenizer.json, fdrl.json)."""
    import torch
    from torch.export import Dim

    from fdrl_core.assets import text_model_dir
    from fdrl_core.speech_frontend import window_for_model

    opts = options or ExportOptions()
    say = log or (lambda msg: print(msg, file=sys.stderr))
    if not MIN_OPSET <= opts.opset <= MAX_OPSET:
        raise ExportError(f"opset {opts.opset} is outside {MIN_OPSET}..{MAX_OPSET}, the range TensorRT 10.3 "
                          "(JetPack 6) parses; opset 23+ would also emit the Attention op it lacks")
    checkpoint = Path(checkpoint).expanduser().resolve()
    cfg = read_config(checkpoint)  # CheckpointError (a ValueError) with a clear message
    text_dir = text_model_dir(opts.text_model)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / ONNX_FILE, out / (ONNX_FILE + ".data")):
        stale.unlink(missing_ok=True)

    say(f"loading {checkpoint} and the text encoder {text_dir}")
    model = build_graph_module(checkpoint, text_dir)
    text_max = int(getattr(model.text_encoder.config, "max_position_embeddings", 512))
    batch = Dim(BATCH, min=1, max=opts.max_batch)
    speech_t = Dim(SPEECH_T, min=1, max=max(cfg.max_speech_frames, 2))
    text_t = Dim(TEXT_T, min=1, max=text_max)
    dynamic = {"speech": {0: batch, 1: speech_t}, "speech_mask": {0: batch, 1: speech_t},
               "input_ids": {0: batch, 1: text_t}, "attention_mask": {0: batch, 1: text_t}}

    say(f"exporting with torch {torch.__version__} (dynamo exporter, opset {opts.opset}); this takes ~30 s")
    t0 = time.perf_counter()
    if not opts.verbose:
        _quiet_exporter()
    with torch.no_grad(), warnings.catch_warnings():
        if not opts.verbose:
            warnings.simplefilter("ignore")
        torch.onnx.export(model, _example_inputs(cfg), str(out / ONNX_FILE), input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_shapes=dynamic, opset_version=opts.opset,
                          dynamo=True, external_data=True, optimize=True, verbose=opts.verbose)
    seconds = time.perf_counter() - t0

    shutil.copyfile(text_dir / TOKENIZER_FILE, out / TOKENIZER_FILE)
    inputs = {name: {"dtype": dtype, "shape": [cfg.speech_dim if d == "speech_dim" else d for d in shape]}
              for name, (dtype, shape) in INPUT_SPECS.items()}
    sidecar = OnnxSidecar(
        labels=list(cfg.labels.classes), inputs=inputs, outputs=list(OUTPUTS), opset=opts.opset,
        source_checkpoint=str(checkpoint), checkpoint_sha256=checkpoint_hash(checkpoint),
        onnx_sha256=onnx_sha256(out), text_model=str(text_dir), max_text_tokens=cfg.max_text_tokens,
        max_speech_frames=cfg.max_speech_frames, speech_dim=cfg.speech_dim,
        extra={"modalities": list(cfg.modalities), "label_set": cfg.labels.name,
               "text_max_tokens_graph": text_max, "exporter": f"torch {torch.__version__} dynamo",
               "export_seconds": round(seconds, 1),
               "masks": "speech_mask/attention_mask: int64, 1 = valid; an all-zero attention_mask = no text",
               # the encoder window the checkpoint was trained with; the run-time encodes with it
               "speech_window": window_for_model(checkpoint).to_dict()},
    )
    sidecar.save(out)
    say(f"wrote {out / ONNX_FILE} ({seconds:.1f} s): " + ", ".join(
        f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in graph_files(out)))
    return sidecar


def load_sidecar(onnx_dir: str | Path) -> OnnxSidecar:
    """The sidecar of an export folder, with a one-line error when the folder is not one."""
    folder = Path(onnx_dir).expanduser()
    if not (folder / ONNX_FILE).is_file():
        raise ExportError(f"{folder} is not an ONNX export folder ({ONNX_FILE} is missing; "
                          "run `python -m export onnx` first)")
    try:
        return OnnxSidecar.load(folder)
    except (OSError, ValueError, TypeError) as e:
        raise ExportError(f"{folder}: unreadable sidecar ({e})") from None
