"""One ONNX graph for everything after the Whisper encoder: MiniLM token states + the FDRL head.

Tokenisation stays outside the graph (the run-time uses `tokenizers`), so the graph takes token ids.
The dynamo exporter (torch >= 2.9 default) is used: the legacy TorchScript exporter bakes example
lengths into attention reshapes (see ../shared/notes/TRT_JETSON.md section 1). Opset 18 by default:
new enough for LayerNormalization (TensorRT's INormalizationLayer), old enough for TensorRT 10.3.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from fdrl_core.checkpoint import checkpoint_hash, read_config
from fdrl_core.cli import InputError
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


class NotAnExport(ExportError, InputError):
    """The folder the user named is not an ONNX export (exit 2: their input, not a failed export)."""


@dataclass
class ExportOptions:
    opset: int = DEFAULT_OPSET
    text_model: str | None = None  # text encoder folder; default: fdrl_core.assets.text_model_dir()
    max_batch: int = 64  # upper bounds the exporter may assume; the graph itself stays dynamic
    verbose: bool = False
    portable: bool = False  # record the checkpoint as '..' and the text model by package (shipped exports)


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
    for stale in (out / ONNX_FILE, *out.glob("*.onnx.data")):
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
    split = split_weights(out, model.text_encoder)
    say(f"weights: {split['text_encoder_mb']:.1f} MB text encoder (identical for every FDRL checkpoint), "
        f"{split['head_mb']:.1f} MB FDRL head")

    shutil.copyfile(text_dir / TOKENIZER_FILE, out / TOKENIZER_FILE)
    inputs = {name: {"dtype": dtype, "shape": [cfg.speech_dim if d == "speech_dim" else d for d in shape]}
              for name, (dtype, shape) in INPUT_SPECS.items()}
    sidecar = OnnxSidecar(
        labels=list(cfg.labels.classes), inputs=inputs, outputs=list(OUTPUTS), opset=opts.opset,
        source_checkpoint=_recorded_checkpoint(checkpoint, out, opts.portable),
        checkpoint_sha256=checkpoint_hash(checkpoint), onnx_sha256=onnx_sha256(out),
        text_model=_recorded_text_model(text_dir, opts.portable), max_text_tokens=cfg.max_text_tokens,
        max_speech_frames=cfg.max_speech_frames, speech_dim=cfg.speech_dim,
        extra={"modalities": list(cfg.modalities), "label_set": cfg.labels.name,
               # "speaker": the run-time subtracts a per-stream running reference before the graph
               "speech_norm": cfg.speech_norm, "speaker_decay": cfg.speaker_decay,
               "text_max_tokens_graph": text_max, "exporter": f"torch {torch.__version__} dynamo",
               "export_seconds": round(seconds, 1), "weight_files": split["files"],
               "masks": "speech_mask/attention_mask: int64, 1 = valid; an all-zero attention_mask = no text",
               # the encoder window the checkpoint was trained with; the run-time encodes with it
               "speech_window": window_for_model(checkpoint).to_dict()},
    )
    sidecar.save(out)
    say(f"wrote {out / ONNX_FILE} ({seconds:.1f} s): " + ", ".join(
        f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in graph_files(out)))
    return sidecar


# ------------------------------------------------------------------------------ weight files

HEAD_DATA = ONNX_FILE + ".data"  # the FDRL head: changes with every training run
TEXT_DATA = "text_encoder-{}.onnx.data"  # MiniLM: the same bytes for every checkpoint
DATA_CHUNK_BYTES = 48 << 20  # keep each file under GitHub's 50 MB warning (the demo export is in git)
INLINE_BYTES = 1024  # smaller initializers stay inside fdrl.onnx (onnx's own default threshold)


def split_weights(folder: str | Path, text_encoder) -> dict:
    """Rewrite the exporter's single weights file as text-encoder files + one head file.

    An initializer goes to the text-encoder files when its bytes equal a text-encoder tensor (or its
    transpose: the exporter folds Linear weights into transposed MatMul constants). They are written in
    an order that depends only on the text encoder's weights, so re-exporting after a retrain rewrites
    the small head file and fdrl.onnx but leaves the ~90 MB of MiniLM byte-identical (one git blob).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import set_external_data

    folder = Path(folder)
    known: dict[str, str] = {}
    for name, tensor in text_encoder.state_dict().items():
        a = tensor.detach().cpu().numpy()
        known.setdefault(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(), name)
        if a.ndim == 2:
            known.setdefault(hashlib.sha256(np.ascontiguousarray(a.T).tobytes()).hexdigest(), name + ".T")
    model = onnx.load(str(folder / ONNX_FILE), load_external_data=True)
    text, head = [], []
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        data = np.ascontiguousarray(arr).tobytes()
        init.CopyFrom(numpy_helper.from_array(arr, init.name))  # raw_data form, no external reference
        if len(data) < INLINE_BYTES:
            continue
        key = known.get(hashlib.sha256(data).hexdigest())
        (text if key else head).append((key or init.name, init, data))

    files: dict[str, int] = {}

    def write(entries, name_for) -> None:
        chunk, offset, handle = 0, 0, None
        for _, init, data in entries:
            if handle is None or (offset and offset + len(data) > DATA_CHUNK_BYTES):
                if handle:
                    handle.close()
                chunk, offset = chunk + 1, 0
                handle = open(folder / name_for(chunk), "wb")
            location = name_for(chunk)
            handle.write(data)
            set_external_data(init, location=location, offset=offset, length=len(data))  # needs raw_data
            init.ClearField("raw_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            offset += len(data)
            files[location] = offset
        if handle:
            handle.close()

    for stale in folder.glob("*.onnx.data"):
        stale.unlink()
    write(sorted(text, key=lambda e: (e[0], e[2])), TEXT_DATA.format)
    write(head, lambda chunk: HEAD_DATA if chunk == 1 else f"{ONNX_FILE}.{chunk}.data")
    onnx.save(model, str(folder / ONNX_FILE))
    text_bytes = sum(len(e[2]) for e in text)
    return {"files": files, "text_encoder_mb": text_bytes / 1e6,
            "head_mb": sum(len(e[2]) for e in head) / 1e6}


def _recorded_checkpoint(checkpoint: Path, out: Path, portable: bool) -> str:
    if portable:
        return os.path.relpath(checkpoint, out.resolve())
    return str(checkpoint)


def _recorded_text_model(text_dir: Path, portable: bool) -> str:
    """Where the text encoder came from; a shipped export names the package, not this machine's path."""
    from fdrl_core.assets import TEXT_PACKAGE, _package_dir

    if portable and _package_dir(TEXT_PACKAGE) == text_dir:
        return f"package:{TEXT_PACKAGE}"
    return str(text_dir)


PACKED_ATOL = 1e-2  # on probabilities: float16/int8-stored MiniLM against the float32 PyTorch reference


def export_packed(checkpoint: str | Path, out_dir: str | Path, log=None, verbose: bool = False) -> OnnxSidecar:
    """The bundled-model export: export, round the MiniLM weights to their packed form (fdrl_core.packed_onnx),
    record the hash of exactly that graph, keep the pack and drop the float32 weight files."""
    from fdrl_core.packed_onnx import PACK_FILE, PACK_KEY, pack

    out = Path(out_dir).expanduser()
    (out / PACK_FILE).unlink(missing_ok=True)
    sidecar = export_onnx(checkpoint, out, ExportOptions(verbose=verbose, portable=True), log=log)
    files = pack(out, prefix=TEXT_DATA.split("{")[0])
    sidecar.onnx_sha256 = onnx_sha256(out)
    sidecar.extra[PACK_KEY] = files
    sidecar.save(out)
    return sidecar


def drop_packed_weights(out_dir: str | Path) -> None:
    """After the parity check: remove the unpacked text-encoder files (the pack replaces them)."""
    for f in Path(out_dir).glob(TEXT_DATA.split("{")[0] + "*.onnx.data"):
        f.unlink()


def load_sidecar(onnx_dir: str | Path) -> OnnxSidecar:
    """The sidecar of an export folder, with a one-line error when the folder is not one."""
    folder = Path(onnx_dir).expanduser()
    if not (folder / ONNX_FILE).is_file():
        raise NotAnExport(f"{folder} is not an ONNX export folder ({ONNX_FILE} is missing; "
                          "run `python -m export onnx` first)")
    try:
        return OnnxSidecar.load(folder)
    except (OSError, ValueError, TypeError) as e:
        raise ExportError(f"{folder}: unreadable sidecar ({e})") from None
