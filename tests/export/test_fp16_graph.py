"""The FP16 pass: I/O types kept, shape arithmetic untouched, valid ONNX that ONNX Runtime runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from prodgen import zoo
from prodgen.errors import ProdgenError
from prodgen.export.fp16_graph import convert_to_fp16
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import onnx_session
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import sample_inputs


def _fp32_onnx(name: str, tmp_path: Path) -> onnx.ModelProto:
    model = zoo.get(name)
    side = max(32, model.bounds.min_side) if model.bounds else None
    return export_onnx(
        serving_module(model), model, sample_inputs(model, batch=1, height=side), tmp_path / "model.onnx"
    )


def _io_types(model: onnx.ModelProto) -> list[tuple[str, int]]:
    return [(info.name, info.type.tensor_type.elem_type) for info in [*model.graph.input, *model.graph.output]]


@pytest.mark.parametrize("name", ["fast-neural-style", "conditional-dcgan"])
def test_io_types_are_kept_and_compute_runs_in_fp16(name: str, tmp_path: Path) -> None:
    fp32 = _fp32_onnx(name, tmp_path)
    converted = convert_to_fp16(fp32)
    assert _io_types(converted.model) == _io_types(fp32)
    conv_like = [n for n in fp32.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert conv_like and all(n.name in converted.fp16_nodes for n in conv_like)
    weights = {i.name: i.data_type for i in converted.model.graph.initializer}
    for node in converted.model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            assert weights[node.input[1]] == TensorProto.FLOAT16


def test_shape_arithmetic_and_resize_scales_stay_as_they_were(tmp_path: Path) -> None:
    fp32 = _fp32_onnx("fast-neural-style", tmp_path)
    converted = convert_to_fp16(fp32).model
    before = {n.name: n for n in fp32.graph.node}
    types = {i.name: i.type.tensor_type.elem_type for i in converted.graph.value_info}
    types.update({i.name: i.data_type for i in converted.graph.initializer})
    for node in converted.graph.node:
        if node.op_type in ("Shape", "ConstantOfShape", "Mod"):
            assert node == before[node.name]
        if node.op_type == "Resize":
            for index in (1, 2):
                if len(node.input) > index and node.input[index]:
                    assert types.get(node.input[index], TensorProto.FLOAT) == TensorProto.FLOAT
        if node.op_type == "Cast" and node.name in before:
            assert node.attribute == before[node.name].attribute


def test_keep_by_op_type_and_by_node_name(tmp_path: Path) -> None:
    fp32 = _fp32_onnx("fast-neural-style", tmp_path)
    norms = [n.name for n in fp32.graph.node if n.op_type == "InstanceNormalization"]
    by_type = convert_to_fp16(fp32, keep_op_types={"InstanceNormalization"})
    assert set(norms) <= set(by_type.kept_fp32) and not set(norms) & set(by_type.fp16_nodes)
    by_name = convert_to_fp16(fp32, keep_node_names={norms[0]})
    assert norms[0] in by_name.kept_fp32 and norms[1] in by_name.fp16_nodes
    onnx_session_input = sample_inputs(zoo.get("fast-neural-style"), batch=1, height=40)
    path = tmp_path / "kept.onnx"
    onnx.save(by_name.model, str(path))
    (output,) = onnx_session(path).run(None, onnx_session_input)
    assert output.shape == (1, 40, 40, 3) and output.dtype == np.uint8
    with pytest.raises(ProdgenError, match="no node named"):
        convert_to_fp16(fp32, keep_node_names={"/not/a/node"})


def test_the_uint8_output_chain_stays_fp32_and_the_network_runs_fp16(tmp_path: Path) -> None:
    """Between the generator's Tanh and the uint8 output the values span 0..255, where FP16's
    spacing (0.125) would flip rounding to uint8 levels."""
    fp32 = _fp32_onnx("dcgan", tmp_path)
    names = [node.name for node in fp32.graph.node]
    tanh = next(index for index, node in enumerate(fp32.graph.node) if node.op_type == "Tanh")
    after = [
        node for node in fp32.graph.node[tanh + 1 :] if node.op_type in ("Sub", "Add", "Mul", "Div", "Round", "Clip")
    ]

    converted = convert_to_fp16(fp32)
    assert after and set(converted.output_chain) == {node.name for node in after}
    assert set(converted.output_chain) <= set(converted.kept_fp32)
    assert names[tanh] in converted.fp16_nodes

    everything = convert_to_fp16(fp32, keep_output_chain=False)
    assert not everything.output_chain and {node.name for node in after} <= set(everything.fp16_nodes)
