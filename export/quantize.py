"""INT8 by explicit quantization: Q/DQ nodes in the ONNX graph, calibrated on real utterances.

TensorRT deprecated implicit INT8 (IInt8EntropyCalibrator2) in 10.1 and TensorRT 11 removes it; a graph
that carries QuantizeLinear/DequantizeLinear pairs is built as INT8 without a calibrator (the scales are
in the graph), and the same graph runs, quantized, on onnxruntime. onnxruntime's static quantizer writes
them in TensorRT's form: symmetric (zero point 0) INT8, activations per tensor, MatMul/Gemm weights per
output channel (axis 1 of a [K, N] MatMul weight). Only MatMul/Gemm are quantized: LayerNorm, Softmax and
the masked pooling stay in float, where an FP16 TensorRT build keeps them.

The quantized folder is a complete export (fdrl.onnx + weights, tokenizer.json, fdrl.json whose
onnx_sha256 is the quantized graph's), so engines built from it are told apart from FP16 ones.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fdrl_core.export_format import ONNX_FILE

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class QuantizeError(RuntimeError):
    """Quantization that cannot be done (no calibration data, not an export folder); one line."""


@dataclass
class QuantizeOptions:
    calib: str  # .npy/.wav folder or a manifest (export.calib.find_items)
    items: int = 128
    batch: int = 8
    speech_frames: int = 150  # calibration shape: a 3 s utterance...
    text_tokens: int = 16  # ...and a short sentence, TensorRT's opt point
    method: str = "entropy"  # entropy | minmax | percentile
    whisper_model: str | None = None


def has_qdq(onnx_path: str | Path) -> bool:
    """Whether a graph is explicitly quantized (has Q/DQ nodes)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def _reader(feeds: list[dict]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

        def rewind(self):
            self.it = iter(feeds)

    return Reader()


def calibration_feeds(onnx_dir: Path, opts: QuantizeOptions, say) -> list[dict]:
    from export.calib import CalibrationError, batches, find_items, load_frames
    from export.onnx_export import load_sidecar
    from fdrl_core.tokenizer import TextTokenizer

    sidecar = load_sidecar(onnx_dir)
    items = load_frames(find_items(opts.calib, opts.items), opts.whisper_model)
    batch = min(opts.batch, len(items))
    if batch < 1:
        raise CalibrationError(f"{opts.calib}: no usable calibration items")
    feeds = list(batches(items, TextTokenizer(onnx_dir, sidecar.max_text_tokens), batch, opts.speech_frames,
                         opts.text_tokens, speech_norm=sidecar.extra.get("speech_norm", "none")))
    say(f"calibration: {len(feeds)} batches of {batch} real utterances from {opts.calib}")
    return feeds


def quantize_export(onnx_dir: str | Path, out_dir: str | Path, opts: QuantizeOptions, log=None):
    """Write an explicitly quantized copy of the export in onnx_dir to out_dir; returns its sidecar."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from export.onnx_export import TOKENIZER_FILE, load_sidecar, onnx_sha256
    from fdrl_core.packed_onnx import ready

    say = log or (lambda msg: print(msg, file=sys.stderr))
    methods = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
               "percentile": CalibrationMethod.Percentile}
    if opts.method not in methods:
        raise QuantizeError(f"unknown calibration method {opts.method!r}; choose {', '.join(methods)}")
    src = Path(onnx_dir).expanduser()
    sidecar = load_sidecar(src)
    src = ready(src, log=say)
    if has_qdq(src / ONNX_FILE):
        raise QuantizeError(f"{src / ONNX_FILE} is already quantized")
    out = Path(out_dir).expanduser()
    if out.resolve() == src.resolve():
        raise QuantizeError("--out must be another folder than the float export")
    out.mkdir(parents=True, exist_ok=True)
    feeds = calibration_feeds(src, opts, say)
    t0 = time.perf_counter()
    for stale in (out / ONNX_FILE, *out.glob("*.onnx.data")):
        stale.unlink(missing_ok=True)
    quantize_static(
        str(src / ONNX_FILE), str(out / ONNX_FILE), _reader(feeds), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8, use_external_data_format=True, calibrate_method=methods[opts.method],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                       "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})
    shutil.copyfile(src / TOKENIZER_FILE, out / TOKENIZER_FILE)
    sidecar.onnx_sha256 = onnx_sha256(out)
    sidecar.source_checkpoint = str((Path(onnx_dir).expanduser() / sidecar.source_checkpoint).resolve())
    sidecar.extra = {k: v for k, v in sidecar.extra.items() if k != "packed_text_encoder"}
    sidecar.extra["quantization"] = {"format": "QDQ int8 (symmetric; MatMul/Gemm; weights per channel)",
                                     "calibration": str(opts.calib), "batches": len(feeds),
                                     "method": opts.method, "from_onnx_sha256": load_sidecar(src).onnx_sha256,
                                     "seconds": round(time.perf_counter() - t0, 1)}
    sidecar.save(out)
    say(f"wrote {out / ONNX_FILE} (Q/DQ INT8) in {time.perf_counter() - t0:.0f} s")
    return sidecar


@dataclass
class QuantizedAccuracy:
    items: int
    labels_equal: int
    max_prob_diff: float
    float_ms: float
    int8_ms: float

    def line(self) -> str:
        return (f"INT8 (Q/DQ, onnxruntime CPU) vs float on {self.items} calibration utterances: labels equal "
                f"{self.labels_equal}/{self.items}, max |dprob| {self.max_prob_diff:.3f}; batch latency "
                f"{self.float_ms:.1f} -> {self.int8_ms:.1f} ms")


def compare_quantized(float_dir: str | Path, int8_dir: str | Path, opts: QuantizeOptions,
                      log=None) -> QuantizedAccuracy:
    """What INT8 costs in agreement with the float graph, measured on the calibration feeds with
    onnxruntime CPU (the same Q/DQ graph TensorRT builds from)."""
    import numpy as np
    import onnxruntime as ort

    from fdrl_core.packed_onnx import ready

    say = log or (lambda msg: print(msg, file=sys.stderr))
    src = ready(Path(float_dir).expanduser(), log=say)
    feeds = calibration_feeds(src, opts, say)
    sessions = [ort.InferenceSession(str(Path(d) / ONNX_FILE), providers=["CPUExecutionProvider"])
                for d in (src, Path(int8_dir).expanduser())]
    equal = total = 0
    worst = 0.0
    times = [[], []]
    for feed in feeds:
        outs = []
        for i, sess in enumerate(sessions):
            t0 = time.perf_counter()
            outs.append(sess.run(["probs"], feed)[0])
            times[i].append((time.perf_counter() - t0) * 1000)
        equal += int((outs[0].argmax(-1) == outs[1].argmax(-1)).sum())
        total += len(outs[0])
        worst = max(worst, float(np.abs(outs[0] - outs[1]).max()))
    return QuantizedAccuracy(total, equal, worst, float(np.median(times[0])), float(np.median(times[1])))
