"""The FP16 fidelity gate: overflow is caught, the fallback keeps the right layer, every zoo model passes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from prodgen import zoo
from prodgen.contract import ImageBounds, image_spec
from prodgen.errors import ProdgenError
from prodgen.export.fidelity import Fp16Outcome, emulation_graph, fp16_with_fallback
from prodgen.export.fp16_graph import convert_to_fp16
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import onnx_session, run_pytorch
from prodgen.zoo.graphs import ImageToImage
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import sample_inputs
from prodgen.zoo.spec import ZooModel


class Overflowing(nn.Module):
    """Pixels scaled far beyond FP16's 65504, mixed by a 1×1 conv, then scaled back."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1) * 0.5 + 0.5 / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x * 1e5) * 1e-5


def _test_model(name: str, build: Callable[[], nn.Module]) -> ZooModel:
    """An image-to-image model around `build`'s network, pixels 0..1, small bounds."""
    return ZooModel(
        name=name,
        task="stylize",
        summary=f"test model: {build.__doc__}",
        upstream="tests",
        build=build,
        serving_graph=lambda network: ImageToImage(network, input_range=(0.0, 1.0), output_range=(0.0, 1.0)),
        inputs=(image_spec("input_image"),),
        outputs=(image_spec("output_image"),),
        bounds=ImageBounds(min_side=8, max_side=64, opt_side=16),
    )


def _overflowing_model() -> ZooModel:
    return _test_model("overflowing", Overflowing)


class Cancelling(nn.Module):
    """Adds 2000 and takes it away again before a sigmoid: FP16's spacing near 2000 is 1.0,
    so the pixels round to 0 or 1 without any value coming near 65504."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((x + 2000.0) - 2000.0)


def _cancelling_model() -> ZooModel:
    return _test_model("cancelling", Cancelling)


def _cases(model: ZooModel, side: int | None) -> list[dict[str, np.ndarray]]:
    """Two small batches of real photos (the second odd-sized) or seeded latents."""
    return [
        sample_inputs(model, batch=2 if side is None else 1, height=side, width=side, seed=0),
        sample_inputs(model, batch=1, height=side and side + 5, width=side and side + 11, seed=3),
    ]


def _exported(model: ZooModel, graph: nn.Module, cases: list[dict[str, np.ndarray]], path: Path) -> onnx.ModelProto:
    return export_onnx(graph, model, cases[0], path)


def _gate(model: ZooModel, graph: nn.Module, side: int, path: Path) -> tuple[onnx.ModelProto, Fp16Outcome]:
    """Export `graph`, then run the FP16 gate and its fallback on real photos."""
    cases = _cases(model, side)
    fp32 = _exported(model, graph, cases, path)
    reference = [run_pytorch(graph, model, case) for case in cases]
    return fp32, fp16_with_fallback(fp32, model, cases, reference)


def onnx_session_from(model: onnx.ModelProto) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_overflow_fails_the_gate_then_the_fallback_keeps_the_overflowing_layers(tmp_path: Path) -> None:
    model = _overflowing_model()
    fp32, outcome = _gate(model, model.serving_graph(model.build()).eval(), 16, tmp_path / "model.onnx")

    assert not outcome.first.passed
    assert outcome.first.nonfinite > 0 or outcome.first.psnr_db < 40
    assert outcome.final.passed and outcome.final.nonfinite == 0
    conv = next(node.name for node in fp32.graph.node if node.op_type == "Conv")
    assert conv in outcome.kept_by_fallback
    assert conv in outcome.kept_fp32
    assert "65504" in outcome.kept_by_fallback[conv]


def test_precision_lost_without_overflow_is_found_by_the_error_each_layer_adds(tmp_path: Path) -> None:
    model = _cancelling_model()
    fp32, outcome = _gate(model, model.serving_graph(model.build()).eval(), 16, tmp_path / "model.onnx")

    assert not outcome.first.passed and outcome.first.nonfinite == 0  # no overflow: the range check finds nothing
    assert outcome.final.passed and outcome.final.psnr_db > outcome.first.psnr_db + 20
    nodes = {node.name: node for node in fp32.graph.node}
    sub, add = "/network/Sub", "/network/Add"  # the model's own ops, not the serving graph's normalisation
    assert nodes[add].output[0] in nodes[sub].input
    assert "relative RMS error" in outcome.kept_by_fallback[sub]
    assert outcome.kept_by_fallback[add] == f"feeds {sub}"


def test_a_style_network_whose_first_layer_overflows_is_rescued_by_the_fallback(tmp_path: Path) -> None:
    """TransformerNet with first-layer activations beyond 65504 (its instance norm hides the
    scale from the output): FP16 gives Inf/NaN, the fallback keeps that conv and the norms."""
    model = zoo.get("fast-neural-style")
    graph = serving_module(model)
    with torch.no_grad():
        conv = graph.get_submodule("network.conv1.conv2d")
        assert isinstance(conv, torch.nn.Conv2d)
        conv.weight.mul_(3000.0)
    fp32, outcome = _gate(model, graph, 48, tmp_path / "model.onnx")

    assert not outcome.first.passed and outcome.first.nonfinite > 0
    assert outcome.final.passed
    assert "65504" in outcome.kept_by_fallback["/network/conv1/conv2d/Conv"]
    norms = [node.name for node in fp32.graph.node if node.op_type == "InstanceNormalization"]
    assert set(norms) <= set(outcome.kept_by_fallback)
    assert len(outcome.graph.fp16_nodes) > len(norms)


def test_running_the_fp16_onnx_on_cpu_hides_overflow_so_the_gate_emulates_fp16(tmp_path: Path) -> None:
    """Why the gate does not simply run the FP16 ONNX: ORT's CPU provider computes such nodes
    in FP32 without rounding between them. The emulation rounds and overflows like FP16."""
    model = _overflowing_model()
    graph = model.serving_graph(model.build()).eval()
    cases = _cases(model, 16)
    fp16 = convert_to_fp16(_exported(model, graph, cases, tmp_path / "model.onnx")).model
    (expected,) = run_pytorch(graph, model, cases[0])
    (on_cpu,) = onnx_session_from(fp16).run(None, cases[0])
    (emulated,) = onnx_session_from(emulation_graph(fp16)).run(None, cases[0])
    assert np.abs(on_cpu.astype(int) - expected.astype(int)).max() <= 2
    assert np.abs(emulated.astype(int) - expected.astype(int)).max() > 50


def test_a_model_that_fails_even_with_fallback_is_refused(tmp_path: Path) -> None:
    model = _overflowing_model()
    graph = model.serving_graph(model.build()).eval()
    cases = _cases(model, 16)
    fp32 = _exported(model, graph, cases, tmp_path / "model.onnx")
    wrong_reference = [[255 - output for output in run_pytorch(graph, model, case)] for case in cases]
    with pytest.raises(ProdgenError, match="FP16 fidelity gate failed"):
        fp16_with_fallback(fp32, model, cases, wrong_reference, served_name="overflowing")


def _test_side(model: ZooModel) -> int | None:
    if model.bounds is None:
        return None
    return max(32, model.bounds.min_side)


TOO_SLOW_FOR_THE_FP16_GATE_HERE = {
    "u2net": "44 M parameters at 320² inside whatever the photo's size (u2netp and u2netp-demo run its graph here)",
    "isnet-dis": "44 M parameters at 1024² inside: not done after 8 minutes on 2 cores, so its FP16 gate is unmeasured",
}


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_passes_the_fp16_gate_and_its_fp16_onnx_runs(name: str, tmp_path: Path) -> None:
    """The FP16 pass on every zoo model: a valid graph with the FP32 graph's I/O types that
    ONNX Runtime runs, and FP16 fidelity ≥ 40 dB against FP32 PyTorch on real inputs."""
    if name in TOO_SLOW_FOR_THE_FP16_GATE_HERE:
        pytest.skip(TOO_SLOW_FOR_THE_FP16_GATE_HERE[name])
    model = zoo.get(name)
    graph = serving_module(model)
    cases = _cases(model, _test_side(model))
    fp32 = _exported(model, graph, cases, tmp_path / "model.onnx")
    reference = [run_pytorch(graph, model, case) for case in cases]

    outcome = fp16_with_fallback(fp32, model, cases, reference)

    assert outcome.final.passed, outcome.final.describe()
    assert outcome.graph.fp16_nodes
    onnx.checker.check_model(outcome.graph.model, full_check=True)
    io = [(i.name, i.type.tensor_type.elem_type) for i in [*fp32.graph.input, *fp32.graph.output]]
    assert [
        (i.name, i.type.tensor_type.elem_type)
        for i in [*outcome.graph.model.graph.input, *outcome.graph.model.graph.output]
    ] == io
    path = tmp_path / "model_fp16.onnx"
    onnx.save(outcome.graph.model, str(path))
    actual = onnx_session(path).run([spec.name for spec in model.outputs], cases[1])
    for spec, want, got in zip(model.outputs, reference[1], actual, strict=True):
        assert got.dtype == want.dtype == spec.numpy_dtype and got.shape == want.shape
