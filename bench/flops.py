"""Floating-point work of an ONNX graph at concrete input shapes.

Conventions (the figures in every report follow them):

- Dense ops count 2 FLOPs per multiply-accumulate, plus 1 per output element for a bias:
  Conv ``2·|Y|·(C/group)·∏k``, ConvTranspose ``2·|X|·(M/group)·∏k``, Gemm and MatMul
  ``2·|Y|·K``. Gemm's alpha/beta scalings are not counted. These are the FLOPs the GEMM
  ceiling of the machine applies to, so achieved GFLOP/s is reported on them.
- Elementwise ops count a fixed number per output element (`ELEMENTWISE_FLOPS`):
  1 for arithmetic and activations, 2 for inference-time BatchNormalization (scale and
  shift), 7 for Instance/Layer/Group normalisation (mean 1, centre 1, square and
  accumulate 2, normalise 1, scale and shift 2). Data movement (Pad, Resize, Transpose,
  Cast, Reshape, Slice, …) counts 0.

Shapes come from ONNX shape inference on the concrete input shapes. prodgen's graphs
compute reflect-padding amounts from the input's shape at run time, which neither
ONNX's nor ONNX Runtime's symbolic inference can follow through `Pad`; for any value
whose shape stays unknown the graph is run once in ONNX Runtime (optimisations off)
with the shapes of those values exposed as outputs, which gives them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import shape_inference

DENSE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

ELEMENTWISE_FLOPS: dict[str, int] = {
    **{
        op: 1
        for op in (
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Pow",
            "Sqrt",
            "Reciprocal",
            "Exp",
            "Log",
            "Neg",
            "Abs",
            "Relu",
            "LeakyRelu",
            "PRelu",
            "Elu",
            "Selu",
            "Sigmoid",
            "HardSigmoid",
            "HardSwish",
            "Tanh",
            "Erf",
            "Softplus",
            "Clip",
            "Max",
            "Min",
            "Round",
            "Floor",
            "Ceil",
        )
    },
    "BatchNormalization": 2,
    "InstanceNormalization": 7,
    "LayerNormalization": 7,
    "GroupNormalization": 7,
    "Softmax": 3,
}

DATA_MOVEMENT = frozenset(
    {
        "Identity",
        "Constant",
        "ConstantOfShape",
        "Shape",
        "Size",
        "Gather",
        "GatherElements",
        "Unsqueeze",
        "Squeeze",
        "Concat",
        "Reshape",
        "Flatten",
        "Transpose",
        "Slice",
        "Split",
        "Pad",
        "Resize",
        "Upsample",
        "Cast",
        "CastLike",
        "Expand",
        "Tile",
        "Mod",
        "Equal",
        "Where",
        "Range",
        "DepthToSpace",
        "SpaceToDepth",
        "Less",
        "Greater",
        "Not",
        "And",
        "Or",
    }
)

ShapeMethod = Literal["auto", "infer", "run"]


@dataclass(frozen=True)
class NodeFlops:
    name: str
    op_type: str
    flops: int
    dense: bool


@dataclass(frozen=True)
class FlopCount:
    input_shapes: dict[str, list[int]]
    dense: int
    """Conv/ConvTranspose/Gemm/MatMul FLOPs: what the GEMM ceiling applies to."""
    elementwise: int
    by_op: dict[str, int]
    nodes: list[NodeFlops] = field(repr=False)
    uncounted_ops: list[str]
    """Op types with no counting rule that are not data movement (their work is missing)."""
    shapes_from: str
    """`shape inference`, or `onnxruntime run` when some shapes needed a run to resolve."""

    @property
    def total(self) -> int:
        return self.dense + self.elementwise

    @property
    def dense_fraction(self) -> float:
        return self.dense / self.total if self.total else 0.0


def _dims(value: onnx.ValueInfoProto) -> list[int] | None:
    """The value's shape when every dimension is a known number, else None."""
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims = value.type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return [d.dim_value for d in dims]


def _with_concrete_inputs(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    initializers = {init.name for init in fixed.graph.initializer}
    for value in fixed.graph.input:
        if value.name in initializers:
            continue
        if value.name not in shapes:
            raise ValueError(f"no concrete shape given for graph input '{value.name}'")
        target = list(shapes[value.name])
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(target):
            raise ValueError(f"input '{value.name}' has rank {len(dims)}, shape {target} given")
        for dim, size in zip(dims, target, strict=True):
            dim.Clear()
            dim.dim_value = int(size)
    return fixed


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {init.name: list(init.dims) for init in inferred.graph.initializer}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = _dims(value)
        if dims is not None:
            shapes[value.name] = dims
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    shapes[node.output[0]] = list(attribute.t.dims)
    return shapes


def _feed(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    initializers = {init.name for init in model.graph.initializer}
    feed = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feed[value.name] = np.zeros(tuple(shapes[value.name]), dtype=dtype)
    return feed


def _shapes_by_running(
    model: onnx.ModelProto, names: list[str], feed: Mapping[str, np.ndarray]
) -> dict[str, list[int]]:
    """Run the graph once with a `Shape` node on each wanted value exposed as an output,
    so only small shape vectors are kept, never the activations themselves."""
    import onnxruntime

    from prodgen.onnx_sessions import onnx_session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    shape_outputs = [f"{name}__prodgen_shape" for name in names]
    for name, shape_name in zip(names, shape_outputs, strict=True):
        probe.graph.node.append(onnx.helper.make_node("Shape", [name], [shape_name]))
        probe.graph.output.append(onnx.ValueInfoProto(name=shape_name))
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnx_session(probe, options)
    values = session.run(shape_outputs, dict(feed))
    return {name: [int(d) for d in value] for name, value in zip(names, values, strict=True)}


def _conv(node: onnx.NodeProto, shape: Mapping[str, list[int]]) -> int:
    y, w = shape[node.output[0]], shape[node.input[1]]
    macs = math.prod(y) * w[1] * math.prod(w[2:])
    bias = math.prod(y) if len(node.input) > 2 and node.input[2] else 0
    return 2 * macs + bias


def _conv_transpose(node: onnx.NodeProto, shape: Mapping[str, list[int]]) -> int:
    x, w, y = shape[node.input[0]], shape[node.input[1]], shape[node.output[0]]
    macs = math.prod(x) * w[1] * math.prod(w[2:])
    bias = math.prod(y) if len(node.input) > 2 and node.input[2] else 0
    return 2 * macs + bias


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def _gemm(node: onnx.NodeProto, shape: Mapping[str, list[int]]) -> int:
    a, y = shape[node.input[0]], shape[node.output[0]]
    k = a[0] if _attribute(node, "transA", 0) else a[1]
    bias = math.prod(y) if len(node.input) > 2 and node.input[2] else 0
    return 2 * math.prod(y) * k + bias


def _matmul(node: onnx.NodeProto, shape: Mapping[str, list[int]]) -> int:
    a, y = shape[node.input[0]], shape[node.output[0]]
    return 2 * math.prod(y) * a[-1]


_DENSE_RULES = {"Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm, "MatMul": _matmul}


def _needed(node: onnx.NodeProto) -> list[str]:
    if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        return [node.input[0], node.input[1], node.output[0]]
    if node.op_type in ELEMENTWISE_FLOPS:
        return [node.output[0]]
    return []


def count_flops(
    model: onnx.ModelProto | Path,
    input_shapes: Mapping[str, Sequence[int]],
    method: ShapeMethod = "auto",
    feed: Mapping[str, np.ndarray] | None = None,
) -> FlopCount:
    """FLOPs of one run of `model` with inputs of `input_shapes`.

    `method` "infer" uses shape inference only (and fails on unresolved shapes), "run"
    resolves every needed shape by running the graph, "auto" runs only when needed.
    `feed` gives real input values for that run (zeros of the given shapes otherwise).
    """
    proto = onnx.load(str(model)) if isinstance(model, Path) else model
    concrete = _with_concrete_inputs(proto, input_shapes)
    shapes = (
        _inferred_shapes(concrete)
        if method != "run"
        else {init.name: list(init.dims) for init in proto.graph.initializer}
    )
    needed = [name for node in concrete.graph.node for name in _needed(node)]
    missing = sorted({name for name in needed if name not in shapes})
    shapes_from = "shape inference"
    if missing:
        if method == "infer":
            raise ValueError(
                f"shape inference left {len(missing)} shapes unknown (first: {missing[0]}); use method='run'"
            )
        shapes.update(_shapes_by_running(proto, missing, feed if feed is not None else _feed(proto, input_shapes)))
        shapes_from = "onnxruntime run"
    nodes: list[NodeFlops] = []
    uncounted: set[str] = set()
    for node in concrete.graph.node:
        if node.op_type in _DENSE_RULES:
            nodes.append(NodeFlops(node.name, node.op_type, _DENSE_RULES[node.op_type](node, shapes), dense=True))
        elif node.op_type in ELEMENTWISE_FLOPS:
            per_element = ELEMENTWISE_FLOPS[node.op_type]
            nodes.append(
                NodeFlops(node.name, node.op_type, per_element * math.prod(shapes[node.output[0]]), dense=False)
            )
        elif node.op_type not in DATA_MOVEMENT:
            uncounted.add(node.op_type)
    by_op: dict[str, int] = {}
    for entry in nodes:
        by_op[entry.op_type] = by_op.get(entry.op_type, 0) + entry.flops
    return FlopCount(
        input_shapes={name: list(dims) for name, dims in input_shapes.items()},
        dense=sum(n.flops for n in nodes if n.dense),
        elementwise=sum(n.flops for n in nodes if not n.dense),
        by_op=dict(sorted(by_op.items(), key=lambda item: -item[1])),
        nodes=nodes,
        uncounted_ops=sorted(uncounted),
        shapes_from=shapes_from,
    )
