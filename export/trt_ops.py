"""Which ONNX ops TensorRT 10.3 (JetPack 6.1/6.2) can parse, and a lint that names the ones it cannot.

Source: onnx/onnx-tensorrt docs/operators.md and docs/Changelog.md. The operator table of the 9.2 release
(opset <= 19, every op marked "Y") plus the ops the changelog adds up to 10.3: DeformConv (10.1). Ops
added later are deliberately absent: BlackmanWindow/HammingWindow/HannWindow (10.4), STFT (10.5),
Attention (10.14; opset 23), RMSNormalization/RotaryEmbedding/TensorScatter (10.15). Gelu (opset 20) is
left out as unverified for 10.3; the exporter's default opset 18 never emits it (it writes Erf instead).
Restrictions that bite a transformer export (from the same table): the `axes` input of Squeeze,
Unsqueeze and the Reduce* ops must be a build-time constant (dynamic Squeeze/Unsqueeze axes came in 10.7).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TRT_VERSION = "10.3"
OPSET_RANGE = (9, 20)

SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or
Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
""".split())

# op -> index of an input that must be a build-time constant (initializer or Constant node)
CONSTANT_INPUTS = {"Squeeze": 1, "Unsqueeze": 1, "ReduceL1": 1, "ReduceL2": 1, "ReduceLogSum": 1,
                   "ReduceLogSumExp": 1, "ReduceMax": 1, "ReduceMean": 1, "ReduceMin": 1, "ReduceProd": 1,
                   "ReduceSum": 1, "ReduceSumSquare": 1, "CumSum": 1}


@dataclass
class LintReport:
    op_counts: Counter
    opset: int
    unsupported: dict[str, int] = field(default_factory=dict)  # op type -> node count
    restrictions: list[str] = field(default_factory=list)  # one line per violated restriction

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.restrictions and OPSET_RANGE[0] <= self.opset <= OPSET_RANGE[1]

    def lines(self) -> list[str]:
        out = [f"TensorRT {TRT_VERSION} op lint: {sum(self.op_counts.values())} nodes, "
               f"{len(self.op_counts)} op types, opset {self.opset}"]
        if not OPSET_RANGE[0] <= self.opset <= OPSET_RANGE[1]:
            out.append(f"  opset {self.opset} is outside {OPSET_RANGE[0]}..{OPSET_RANGE[1]}")
        for op, n in sorted(self.unsupported.items()):
            out.append(f"  unsupported by TensorRT {TRT_VERSION}: {op} ({n} nodes)")
        out += [f"  {r}" for r in self.restrictions]
        if self.ok:
            out.append("  every op is in the TensorRT 10.3 ONNX parser's supported set")
        return out


def _nodes(graph):
    """All nodes, including those inside If/Loop/Scan bodies."""
    for node in graph.node:
        yield node, graph
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from _nodes(attr.g)
            for g in attr.graphs:
                yield from _nodes(g)


def lint_model(model) -> LintReport:
    """Lint an onnx.ModelProto (weights need not be loaded)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    counts: Counter = Counter()
    unsupported: Counter = Counter()
    restrictions = []
    constants = {init.name for init in model.graph.initializer}
    nodes = list(_nodes(model.graph))
    constants |= {out for node, _ in nodes if node.op_type == "Constant" for out in node.output}
    for node, _ in nodes:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        counts[op] += 1
        if op not in SUPPORTED_OPS:
            unsupported[op] += 1
        idx = CONSTANT_INPUTS.get(op)
        if idx is not None and len(node.input) > idx and node.input[idx] and node.input[idx] not in constants:
            restrictions.append(f"{op} node {node.name!r}: input {idx} (axes) is computed at run time; "
                                f"TensorRT {TRT_VERSION} needs it constant")
    return LintReport(counts, opset, dict(unsupported), restrictions)


def lint_file(path: str | Path) -> LintReport:
    import onnx

    return lint_model(onnx.load(str(path), load_external_data=False))
