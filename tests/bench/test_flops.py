"""FLOP counting against small graphs counted by hand, and one real prodgen graph whose
reflect-padding shapes only a run can resolve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from prodgen import zoo
from prodgen.bench.flops import count_flops
from prodgen.export.onnx_export import export_onnx
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import sample_inputs


def weight(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def graph_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list],
    output: str,
    initializers: list[onnx.TensorProto],
    rank: int = 4,
) -> onnx.ModelProto:
    """A checked single-output graph; inputs are FP32 except `pads` (INT64)."""
    graph = helper.make_graph(
        nodes,
        "hand",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64 if name == "pads" else TensorProto.FLOAT, shape)
            for name, shape in inputs.items()
        ],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [f"d{i}" for i in range(rank)])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    )  # readable by older ONNX Runtimes too
    onnx.checker.check_model(model)
    return model


def test_conv_with_bias_and_padding() -> None:
    model = graph_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])],
        {"x": ["n", 3, "h", "w"]},
        "y",
        [weight("w", 4, 3, 3, 3), weight("b", 4)],
    )
    count = count_flops(model, {"x": [1, 3, 8, 8]})
    # y is 1×4×8×8 = 256 values, each 3·3·3 = 27 multiply-adds, plus one bias add
    assert count.dense == 2 * 256 * 27 + 256 == 14080
    assert count.elementwise == 0
    assert count.by_op == {"Conv": 14080}
    assert count.shapes_from == "shape inference"


def test_strided_grouped_conv_without_bias() -> None:
    model = graph_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], group=2, kernel_shape=[3, 3])],
        {"x": [2, 4, 10, 10]},
        "y",
        [weight("w", 6, 2, 3, 3)],
    )
    # y is 2×6×4×4 = 192 values; each sees C/group = 2 channels × 9 taps
    assert count_flops(model, {"x": [2, 4, 10, 10]}).dense == 2 * 192 * 18 == 6912


def test_conv_transpose_counts_per_input_value() -> None:
    model = graph_model(
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], kernel_shape=[2, 2])],
        {"x": [1, 2, 4, 4]},
        "y",
        [weight("w", 2, 3, 2, 2), weight("b", 3)],
    )
    # each of the 32 input values is scattered into 3 outputs channels × 4 taps; y is 1×3×8×8 = 192 for the bias
    assert count_flops(model, {"x": [1, 2, 4, 4]}).dense == 2 * 32 * 3 * 4 + 192 == 960


def test_gemm_with_transposed_b_and_bias() -> None:
    model = graph_model(
        [helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)],
        {"a": [2, 5]},
        "y",
        [weight("b", 3, 5), weight("c", 3)],
        rank=2,
    )
    assert count_flops(model, {"a": [2, 5]}).dense == 2 * 2 * 3 * 5 + 6 == 66


def test_batched_matmul() -> None:
    model = graph_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": [2, 3, 4]}, "y", [weight("b", 4, 6)], rank=3
    )
    assert count_flops(model, {"a": [2, 3, 4]}).dense == 2 * (2 * 3 * 6) * 4 == 288


def test_elementwise_and_normalisation_rules() -> None:
    model = graph_model(
        [
            helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["n"]),
            helper.make_node("Relu", ["n"], ["r"]),
            helper.make_node("Add", ["r", "x"], ["y"]),
        ],
        {"x": [1, 4, 8, 8]},
        "y",
        [weight("scale", 4), weight("bias", 4)],
    )
    count = count_flops(model, {"x": [1, 4, 8, 8]})
    assert count.dense == 0
    assert count.by_op == {"InstanceNormalization": 7 * 256, "Relu": 256, "Add": 256}
    assert count.elementwise == 9 * 256
    assert count.uncounted_ops == []


def test_shapes_that_depend_on_input_values_are_resolved_by_a_run() -> None:
    model = graph_model(
        [
            helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"),
            helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[3, 3]),
        ],
        {"x": ["n", 3, "h", "w"], "pads": [8]},
        "y",
        [weight("w", 4, 3, 3, 3)],
    )
    shapes = {"x": [1, 3, 8, 8], "pads": [8]}
    feed: dict[str, np.ndarray] = {
        "x": np.zeros((1, 3, 8, 8), np.float32),
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
    }
    with pytest.raises(ValueError, match="unknown"):
        count_flops(model, shapes, method="infer")
    count = count_flops(model, shapes, feed=feed)
    # padded to 10×10, a valid 3×3 conv gives 1×4×8×8 = 256 values of 27 multiply-adds
    assert count.dense == 2 * 256 * 27
    assert count.shapes_from == "onnxruntime run"


def test_run_and_inference_agree_on_a_static_graph() -> None:
    model = graph_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
        {"x": [1, 3, 8, 8]},
        "y",
        [weight("w", 4, 3, 3, 3), weight("b", 4)],
    )
    assert count_flops(model, {"x": [1, 3, 8, 8]}, method="run").dense == count_flops(model, {"x": [1, 3, 8, 8]}).dense


def conv_flops_by_hooks(module: nn.Module, inputs: dict[str, np.ndarray], model_inputs: list[str]) -> int:
    total = 0

    def hook(layer: nn.Conv2d, _args: object, output: torch.Tensor) -> None:
        nonlocal total
        kernel = layer.kernel_size[0] * layer.kernel_size[1]
        total += 2 * output.numel() * (layer.in_channels // layer.groups) * kernel
        total += output.numel() if layer.bias is not None else 0

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        module(*(torch.from_numpy(inputs[name]) for name in model_inputs))
    for handle in handles:
        handle.remove()
    return total


def test_style_network_matches_pytorch_conv_count(tmp_path: Path) -> None:
    entry = zoo.get("fast-neural-style")
    module = serving_module(entry)
    sample = sample_inputs(entry, 1, 62, 75)  # not multiples of 4: the graph reflect-pads to 64×76 first
    path = tmp_path / "model.onnx"
    export_onnx(module, entry, sample_inputs(entry, 1, 64, 64), path)
    count = count_flops(path, {k: v.shape for k, v in sample.items()}, feed=sample)
    assert count.shapes_from == "onnxruntime run"
    assert count.dense == conv_flops_by_hooks(module, sample, [s.name for s in entry.inputs])
    assert count.dense_fraction > 0.9
