"""FP32 ONNX → mixed-precision FP16 ONNX, with the graph's inputs and outputs unchanged.

Since TensorRT 11 removed weak typing, an engine's precision is the precision written in
the ONNX file: TensorRT (≥ 10.12, strongly typed) and ONNX Runtime's TensorRT provider run
each tensor in the type the graph gives it. This pass decides those types:

- only *compute* tensors change: float tensors that depend on a graph input through
  anything but `Shape`/`Size`. Shape arithmetic, `Resize` scales, `ConstantOfShape` and
  the `Cast`s the exporter wrote stay exactly as they are;
- a node runs in FP16 when its op type is one we know is numerically safe to lower (see
  `FP16_OPS`) and it is not kept in FP32 by op type or node name;
- float weights (initializers, `Constant`s, `Identity` aliases of them) feeding an FP16
  node get an FP16 copy; every other FP32 ↔ FP16 edge gets one `Cast`, and graph outputs
  keep their declared type (uint8 images stay uint8, FP32 latents stay FP32);
- a node whose own weights do not fit in FP16 (|w| > 65504) stays FP32 by itself;
- the output chain (the affine map to 0..255, `Round`, `Clip` before the uint8 `Cast`) stays
  FP32: FP16's spacing is 0.125 between 128 and 256, so rounding there flips uint8 levels the
  FP32 graph does not (measured: a DCGAN at 51.9 dB with it in FP16, 83.5 dB without; a few
  element-wise ops on the output cost nothing on a GPU).

Own pass rather than ModelOpt or onnxconverter-common: ModelOpt's `[onnx]` extra pulls
numpy 2 and onnxruntime-gpu into the serving environment (where python-backend responses
then came back empty), and onnxconverter-common's `convert_float_to_float16` produced a
TransformerNet graph ONNX Runtime rejects.

Graphs over protobuf's 2 GB (an SDXL UNet) are converted without loading their weights: the
model is loaded with `load_external_data=False`, `weights` names the folder its data files are
in, a weight is read from there only when its value is needed (range check, FP16 copy), and the
FP16 copies are appended to a data file in the same folder. The converted proto stays small, so
shape inference runs on it in memory, and ONNX Runtime opens it with that folder as its
external-initializer folder (prodgen/onnx_sessions.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from prodgen.errors import ProdgenError
from prodgen.export.external_data import append_tensor

FP16_MAX = 65504.0

FP16_OPS = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Max", "Min", "Sqrt", "Pow", "Reciprocal", "Erf",
        "Conv", "ConvTranspose", "Gemm", "MatMul",
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid", "Softplus", "Softmax",
        "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
        "MaxPool", "AveragePool", "GlobalAveragePool",
        "Concat", "Split", "Slice", "Pad", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten",
        "Expand", "Tile", "Gather", "Where", "Identity", "DepthToSpace", "SpaceToDepth",
        "Resize", "Upsample", "Clip", "Round", "Floor", "Ceil",
    }
)  # fmt: skip
"""Ops lowered to FP16 when they carry compute tensors. Anything else (and any op we have
not looked at) stays FP32, with casts around it: correct, only slower."""

DEFAULT_KEEP_OP_TYPES: frozenset[str] = frozenset()
"""Op types kept in FP32 unless asked otherwise. Empty on purpose: measured on every zoo
model, FP16 InstanceNormalization and Resize pass the fidelity gate; the gate's fallback
keeps what a given checkpoint needs. (The output chain is kept by position, not by type.)"""

_TYPE_AGNOSTIC_CONSUMERS = frozenset({"Shape", "Size", "Cast", "CastLike"})
"""Ops that accept FP16 input as well as FP32 without changing what they compute."""

_PARAMETER_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}
"""Float inputs that are parameters (roi, scales), not data: they keep their FP32 type."""

_SHAPE_OPS = frozenset({"Shape", "Size"})
_OUTPUT_CHAIN_OPS = frozenset(
    {"Add", "Sub", "Mul", "Div", "Round", "Clip", "Cast", "Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze"}
)
"""Steps from a network's last layer to a graph output that map one tensor by constants."""

_FLOAT = TensorProto.FLOAT
_FLOAT16 = TensorProto.FLOAT16


@dataclass(frozen=True)
class Fp16Graph:
    """The converted model and what the pass decided."""

    model: onnx.ModelProto
    fp16_nodes: tuple[str, ...]
    kept_fp32: tuple[str, ...]
    """Nodes that carry compute tensors but stay FP32 (asked for, output chain, unknown op, or weights out of FP16 range)."""
    casts_inserted: int
    output_chain: tuple[str, ...] = ()
    """The compute nodes of the output chain, kept FP32 by default."""
    weights: Path | None = None
    """The folder of the model's external data files (None: the weights are inside the proto)."""


@dataclass
class _Analysis:
    types: dict[str, int]
    constants: Mapping[str, np.ndarray]
    data_dependent: set[str]
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


class _Constants(Mapping[str, np.ndarray]):
    """Tensors whose value is known without running the graph: initializers, `Constant`
    outputs with a tensor value, and `Identity` aliases of either. A value is read when asked
    for (from `weights` for external data) and not kept, so a graph's weights are never all in memory."""

    def __init__(self, graph: onnx.GraphProto, weights: Path | None) -> None:
        self._weights = "" if weights is None else str(weights)
        self._tensors: dict[str, onnx.TensorProto] = {init.name: init for init in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self._tensors[node.output[0]] = node.attribute[0].t
            elif node.op_type == "Identity" and node.input[0] in self._tensors:
                self._tensors[node.output[0]] = self._tensors[node.input[0]]

    def __getitem__(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self._tensors[name], base_dir=self._weights)

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def _constants(graph: onnx.GraphProto, weights: Path | None = None) -> Mapping[str, np.ndarray]:
    return _Constants(graph, weights)


def data_dependent(graph: onnx.GraphProto) -> set[str]:
    """Tensors computed from a graph input's values (a `Shape` of it carries no values)."""
    dependent = {info.name for info in graph.input}
    for node in graph.node:
        if node.op_type not in _SHAPE_OPS and any(name in dependent for name in node.input):
            dependent.update(name for name in node.output if name)
    return dependent


def _analyse(model: onnx.ModelProto, weights: Path | None = None) -> _Analysis:
    graph = model.graph
    for node in graph.node:
        if any(
            attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attribute in node.attribute
        ):
            raise ProdgenError(
                f"node '{node.name}' ({node.op_type}) has a subgraph; the FP16 pass supports graphs without control flow"
            )
    analysis = _Analysis(value_types(model), _constants(graph, weights), data_dependent(graph))
    for node in graph.node:
        for name in node.input:
            analysis.consumers.setdefault(name, []).append(node)
    return analysis


def _name_nodes(graph: onnx.GraphProto) -> None:
    taken = {node.name for node in graph.node if node.name}
    for index, node in enumerate(graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{index}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)


def output_chain(graph: onnx.GraphProto, constants: Mapping[str, np.ndarray]) -> list[str]:
    """Nodes on the way back from each graph output that map a single tensor by constants."""
    producers = {name: node for node in graph.node for name in node.output}
    chain: list[str] = []
    for output in graph.output:
        name: str | None = output.name
        while name is not None and (node := producers.get(name)) is not None and node.op_type in _OUTPUT_CHAIN_OPS:
            data = [tensor for tensor in node.input if tensor and tensor not in constants]
            if len(data) != 1:
                break
            if node.name not in chain:
                chain.append(node.name)
            name = data[0]
    return chain


def _data_inputs(node: onnx.NodeProto, analysis: _Analysis) -> list[tuple[int, str]]:
    parameters = _PARAMETER_INPUTS.get(node.op_type, set())
    return [
        (index, name)
        for index, name in enumerate(node.input)
        if name and index not in parameters and analysis.types.get(name) == _FLOAT
    ]


def _carries_compute(node: onnx.NodeProto, analysis: _Analysis) -> bool:
    return any(analysis.types.get(name) == _FLOAT and name in analysis.data_dependent for name in node.output)


def _weights_fit(node: onnx.NodeProto, analysis: _Analysis) -> bool:
    for _, name in _data_inputs(node, analysis):
        value = analysis.constants.get(name)
        if value is not None and value.size and np.abs(value.astype(np.float64)).max() > FP16_MAX:
            return False
    return True


def plan_fp16(
    model: onnx.ModelProto,
    keep_op_types: Iterable[str] = DEFAULT_KEEP_OP_TYPES,
    keep_node_names: Iterable[str] = (),
    keep_output_chain: bool = True,
    weights: Path | None = None,
) -> tuple[list[str], list[str]]:
    """(nodes that would run in FP16, compute nodes kept in FP32), by node name, without converting."""
    model = _copy_named(model)
    analysis = _analyse(model, weights)
    chain = output_chain(model.graph, analysis.constants) if keep_output_chain else []
    return _plan(model.graph, analysis, set(keep_op_types), set(keep_node_names) | set(chain))


def _copy_named(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _name_nodes(copy.graph)
    return copy


def _plan(
    graph: onnx.GraphProto, analysis: _Analysis, keep_op_types: set[str], keep_node_names: set[str]
) -> tuple[list[str], list[str]]:
    fp16: list[str] = []
    kept: list[str] = []
    for node in graph.node:
        if node.op_type in _TYPE_AGNOSTIC_CONSUMERS or not _carries_compute(node, analysis):
            continue
        if (
            node.op_type in FP16_OPS
            and node.op_type not in keep_op_types
            and node.name not in keep_node_names
            and _weights_fit(node, analysis)
        ):
            fp16.append(node.name)
        else:
            kept.append(node.name)
    return fp16, kept


def _without_dead_nodes(nodes: list[onnx.NodeProto], graph_outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop nodes nothing reads any more (FP32 weights replaced by their FP16 copies)."""
    while True:
        used = {name for node in nodes for name in node.input} | graph_outputs
        alive = [node for node in nodes if any(name in used for name in node.output)]
        if len(alive) == len(nodes):
            return alive
        nodes = alive


def convert_to_fp16(
    model: onnx.ModelProto,
    keep_op_types: Iterable[str] = DEFAULT_KEEP_OP_TYPES,
    keep_node_names: Iterable[str] = (),
    keep_output_chain: bool = True,
    weights: Path | None = None,
) -> Fp16Graph:
    """A mixed-precision copy of `model`; graph inputs and outputs keep their types.

    The result passes `onnx.checker` (full check) and loads in ONNX Runtime. With `weights` (the
    folder of `model`'s external data) the FP16 weights are appended to a new data file there and the
    result refers to both; onnx.checker then runs on the file it is saved to (external_data.py).
    """
    model = _copy_named(model)
    graph = model.graph
    analysis = _analyse(model, weights)
    fp16_data = _fresh_data_name(weights) if weights is not None else ""
    keep_names = set(keep_node_names)
    unknown = keep_names - {node.name for node in graph.node}
    if unknown:
        raise ProdgenError(
            f"no node named {', '.join(sorted(unknown))} in the graph; keep-in-FP32 names must be node names"
        )
    chain = output_chain(graph, analysis.constants) if keep_output_chain else []
    fp16_names, kept = _plan(graph, analysis, set(keep_op_types), keep_names | set(chain))
    fp16_set = set(fp16_names)
    graph_outputs = {info.name for info in graph.output}
    initializers = {init.name: init for init in graph.initializer}

    new_nodes: list[onnx.NodeProto] = []
    new_initializers: list[onnx.TensorProto] = []
    as_fp16: dict[str, str] = {}  # FP32 tensor → its FP16 twin
    as_fp32: dict[str, str] = {}  # FP16 tensor (the name the FP32 graph gave it) → its FP32 twin
    produced_fp16: set[str] = set()
    casts = 0

    def fp16_twin(name: str) -> str:
        nonlocal casts
        if name in produced_fp16:
            return name
        if name not in as_fp16:
            twin = f"{name}__fp16"
            value = analysis.constants.get(name)
            if value is not None and weights is not None and value.nbytes >= _EXTERNAL_MIN_BYTES:
                new_initializers.append(append_tensor(value.astype(np.float16), twin, weights, fp16_data))
            elif value is not None:
                new_initializers.append(numpy_helper.from_array(value.astype(np.float16), twin))
            else:
                new_nodes.append(helper.make_node("Cast", [name], [twin], name=f"{twin}__cast", to=_FLOAT16))
                casts += 1
            as_fp16[name] = twin
        return as_fp16[name]

    def fp32_twin(name: str) -> str:
        nonlocal casts
        if name not in as_fp32:
            twin = f"{name}__fp32"
            new_nodes.append(helper.make_node("Cast", [name], [twin], name=f"{twin}__cast", to=_FLOAT))
            casts += 1
            as_fp32[name] = twin
        return as_fp32[name]

    for node in graph.node:
        if node.name in fp16_set:
            for index, name in _data_inputs(node, analysis):
                node.input[index] = fp16_twin(name)
            renamed_outputs: list[tuple[str, str]] = []
            for index, name in enumerate(node.output):
                if analysis.types.get(name) != _FLOAT:
                    continue
                if name in graph_outputs:
                    node.output[index] = f"{name}__fp16"
                    renamed_outputs.append((node.output[index], name))
                    produced_fp16.add(node.output[index])
                else:
                    produced_fp16.add(name)
            new_nodes.append(node)
            for fp16_name, declared in renamed_outputs:
                new_nodes.append(helper.make_node("Cast", [fp16_name], [declared], name=f"{declared}__cast", to=_FLOAT))
                casts += 1
        else:
            if node.op_type not in _TYPE_AGNOSTIC_CONSUMERS:
                for index, name in enumerate(node.input):
                    if name in produced_fp16:
                        node.input[index] = fp32_twin(name)
            new_nodes.append(node)

    new_nodes = _without_dead_nodes(new_nodes, graph_outputs)
    used = {name for node in new_nodes for name in node.input}
    del graph.node[:]
    graph.node.extend(new_nodes)
    kept_initializers = [init for name, init in initializers.items() if name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers + new_initializers)
    del graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    if weights is None:
        onnx.checker.check_model(converted, full_check=True)
    chain_kept = tuple(name for name in chain if name in kept)
    return Fp16Graph(converted, tuple(fp16_names), tuple(kept), casts, chain_kept, weights)


_EXTERNAL_MIN_BYTES = 1024


def _fresh_data_name(folder: Path) -> str:
    """A data file name not yet used in `folder`: each conversion (the gate may convert several times)
    writes its own FP16 weights."""
    return next(
        name for name in (f"fp16-{index}.onnx.data" for index in itertools.count()) if not (folder / name).exists()
    )
