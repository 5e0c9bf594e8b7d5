"""`--int8`: a QDQ graph inside the INT8 gate with its FP32 layers named, or a refusal that says why."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from prodgen import zoo
from prodgen.errors import ProdgenError
from prodgen.export.int8 import OPENVINO_QUANTISED_OPS, int8_with_fallback, openvino_int8, quantisable_layers
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import run_pytorch
from prodgen.model_repository.config import parse_pbtxt
from prodgen.openvino_runtime import openvino_available
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import sample_inputs, verification_cases
from tests_support import console_script

Exported = tuple[Path, list[dict[str, np.ndarray]], list[list[np.ndarray]]]
UPSCALER = "srvgg-x2-small"
WEIGHTS = Path(__file__).parents[2] / "demo" / "weights" / "srvgg-x2-demo.safetensors"
"""A small trained upscaler (the demo's): Convs to quantise, and pictures worth comparing."""
SIDE = 64


@pytest.fixture(scope="module")
def upscaler_onnx(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    model = zoo.get(UPSCALER)
    graph = serving_module(model, WEIGHTS, 0)
    cases = verification_cases(model)
    path = tmp_path_factory.mktemp("int8") / "model.onnx"
    export_onnx(graph, model, cases[0], path)
    small = [sample_inputs(model, 2, SIDE, SIDE, seed=0)]  # the gate's loop runs many times: small photos keep it fast
    return path, small, [run_pytorch(graph, model, inputs) for inputs in small]


@pytest.fixture(scope="module")
def dcgan_onnx(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """ConvTranspose only: nothing for ONNX Runtime's INT8 (its CPU kernels run it faster in FP32), all of it for OpenVINO's."""
    model = zoo.get("dcgan")
    graph = serving_module(model, None, 0)
    cases = verification_cases(model)
    path = tmp_path_factory.mktemp("int8-dcgan") / "model.onnx"
    export_onnx(graph, model, cases[0], path)
    return path, cases, [run_pytorch(graph, model, inputs) for inputs in cases]


def _dequantised_weights(path: Path, ops: tuple[str, ...] = ("Conv", "MatMul", "Gemm")) -> dict[str, bool]:
    """Layer name → whether its weight reaches it through a DequantizeLinear (i.e. it runs in INT8)."""
    graph = onnx.load(str(path)).graph
    dequantised = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return {node.name: node.input[1] in dequantised for node in graph.node if node.op_type in ops}


def test_a_gate_the_full_int8_graph_misses_keeps_the_worst_layers_in_fp32_and_names_them(
    upscaler_onnx: Exported, tmp_path: Path
) -> None:
    path, cases, reference = upscaler_onnx
    model = zoo.get(UPSCALER)
    lenient = int8_with_fallback(path, tmp_path, model, cases, reference, 0.0, 0.0, calibration_side=SIDE)
    assert not lenient.kept_fp32 and lenient.first == lenient.final
    assert all(_dequantised_weights(lenient.path).values())
    stricter = lenient.first.psnr_db + 0.5
    outcome = int8_with_fallback(path, tmp_path, model, cases, reference, stricter, 0.0, calibration_side=SIDE)
    assert not outcome.first.passed and outcome.final.passed and outcome.final.psnr_db >= stricter
    assert outcome.kept_fp32 and set(outcome.kept_fp32) <= set(quantisable_layers(onnx.load(str(path))))
    assert all("relative RMS error in INT8" in why for why in outcome.kept_fp32.values())
    runs_int8 = _dequantised_weights(outcome.path)
    assert not any(runs_int8[name] for name in outcome.kept_fp32)
    assert outcome.quantised_layers == sum(runs_int8.values()) > 0


def test_a_gate_no_int8_graph_can_meet_is_refused_with_the_measured_fidelity(
    upscaler_onnx: Exported, tmp_path: Path
) -> None:
    path, cases, reference = upscaler_onnx
    with pytest.raises(ProdgenError, match=r"up_int8: INT8 fidelity gate failed: PSNR .* layers kept in FP32"):
        int8_with_fallback(path, tmp_path, zoo.get(UPSCALER), cases, reference, 200.0, 0.0, "up_int8", SIDE)


def test_export_says_what_it_measured_and_publishes_only_variants_inside_their_gate_and_faster(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    openvino = ["--openvino"] if openvino_available() else []  # without the extra, the INT8 half still runs
    result = subprocess.run(
        [console_script("prodgen-export"), UPSCALER, "--checkpoint", str(WEIGHTS), "--name", "up", "--int8",
         *openvino, "--repository", str(repository), "--max-batch", "4"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = " ".join(result.stdout.split())
    assert "INT8 fidelity: PSNR" in printed and "layers in INT8; kept in FP32:" in printed
    assert "INT8 ONNX Runtime vs FP32 ONNX Runtime at 256×256" in printed and "batch 4:" in printed
    if "published up_int8 " in printed:
        record = json.loads((repository / "up_int8" / "1" / "prodgen-int8.json").read_text())
        assert record["int8"]["published"]["psnr_db"] >= 35 and record["int8"]["published"]["lowest_ssim"] >= 0.95
        assert all(speedup > 1 for speedup in record["int8"]["race"]["speedup"].values())
        config = parse_pbtxt((repository / "up_int8" / "config.pbtxt").read_text())
        assert config.backend == "onnxruntime" and config.max_batch_size == 4
        graph = onnx.load(str(repository / "up_int8" / "1" / "model.onnx")).graph
        assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    else:
        assert "up_int8 not published: not faster than FP32 ONNX Runtime here" in printed
        assert not (repository / "up_int8").exists()
    for label, name in (("OpenVINO", "up_openvino"), ("INT8 OpenVINO", "up_int8_openvino")) if openvino else ():
        assert re.search(f"{label} \\((bf16|f32) on this CPU\\) fidelity: PSNR", printed), printed
        assert f"{label} vs FP32 ONNX Runtime at 256×256, median of turns: batch 1:" in printed
        if f"published {name} version 1 (OpenVINO IR, max batch 1)" in printed:
            config = parse_pbtxt((repository / name / "config.pbtxt").read_text())
            assert config.backend == "openvino" and config.max_batch_size == 1
            record = json.loads((repository / name / "1" / "prodgen-openvino.json").read_text())
            assert record["openvino"]["fidelity"]["psnr_db"] >= record["openvino"]["fidelity"]["min_psnr_db"]
            assert all(speedup > 1 for speedup in record["openvino"]["race"]["speedup"].values())
        else:
            assert f"{name} not published:" in printed and not (repository / name).exists()


def test_a_model_without_layers_to_quantise_is_refused_in_one_line(dcgan_onnx: Exported, tmp_path: Path) -> None:
    path, cases, _ = dcgan_onnx
    with pytest.raises(ProdgenError, match="no Conv/MatMul/Gemm layers to quantise to INT8"):
        int8_with_fallback(path, tmp_path, zoo.get("dcgan"), cases, [], served_name="dcgan_int8")


def test_openvino_gets_its_own_int8_graph_with_the_conv_transposes_onnx_runtime_keeps_in_fp32(
    dcgan_onnx: Exported, tmp_path: Path
) -> None:
    path, cases, reference = dcgan_onnx
    outcome = openvino_int8(path, tmp_path, zoo.get("dcgan"), cases, reference, None, served_name="g")
    assert outcome.quantised_ops == OPENVINO_QUANTISED_OPS and outcome.final.passed
    runs_int8 = _dequantised_weights(outcome.path, ("ConvTranspose",))
    assert runs_int8 and all(runs_int8.values()) and outcome.quantised_layers == len(runs_int8)
    assert (
        f"{len(runs_int8)} Conv/MatMul/Gemm/ConvTranspose layers in INT8; kept in FP32: none"
        in outcome.describe_layers()
    )


def test_without_conv_transposes_openvino_converts_onnx_runtimes_int8_graph_or_nothing(
    upscaler_onnx: Exported, tmp_path: Path
) -> None:
    path, cases, reference = upscaler_onnx
    model = zoo.get(UPSCALER)
    onnx_runtime = int8_with_fallback(path, tmp_path, model, cases, reference, 0.0, 0.0, calibration_side=SIDE)
    assert openvino_int8(path, tmp_path, model, cases, reference, onnx_runtime, calibration_side=SIDE) is onnx_runtime
    with pytest.raises(ProdgenError, match="up_int8_openvino: OpenVINO would quantise the same layers .* was refused"):
        openvino_int8(path, tmp_path, model, cases, reference, None, served_name="up_int8_openvino")
