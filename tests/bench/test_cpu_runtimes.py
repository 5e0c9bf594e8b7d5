"""`prodgen-bench runtimes` on a small zoo model: every runtime's row, and what export would publish."""

from __future__ import annotations

from prodgen import zoo
from prodgen.bench.cpu_runtimes import INT8_FLAGS, RuntimesReport, cpu_flags, markdown, measure_model
from prodgen.bench.direct import DirectSettings
from prodgen.bench.events import Silent
from prodgen.openvino_runtime import openvino_available

QUICK = DirectSettings(warmup=1, min_runs=2, min_seconds=0.0, max_seconds=2.0)


def test_each_runtime_gets_a_row_and_a_refused_int8_says_why() -> None:
    row = measure_model(zoo.get("dcgan"), None, Silent(), QUICK)
    runtimes = {r.runtime: r for r in row.runtimes}
    expected = {"onnxruntime", "onnxruntime-int8"} | ({"openvino", "openvino-int8"} if openvino_available() else set())
    assert set(runtimes) == expected and row.weights == "seeded random"
    baseline = runtimes["onnxruntime"]
    assert baseline.speedup == {1: 1.0, 4: 1.0} and baseline.published is None and baseline.psnr_db is not None
    if openvino_available():
        openvino = runtimes["openvino"]
        assert set(openvino.images_per_s) == {1, 4} and openvino.inside_gate is not None
        faster = all(value > 1 for value in openvino.speedup.values())
        assert openvino.published == (bool(openvino.inside_gate) and faster)
    int8 = runtimes["onnxruntime-int8"]  # DCGAN is ConvTranspose only: nothing ONNX Runtime's INT8 would speed up
    assert int8.published is False and "no Conv/MatMul/Gemm layers" in int8.note and not int8.images_per_s
    if openvino_available():  # … while OpenVINO gets a graph with the ConvTransposes quantised
        openvino_int8 = runtimes["openvino-int8"]
        assert "Conv/MatMul/Gemm/ConvTranspose layers in INT8" in openvino_int8.note and openvino_int8.inside_gate
        assert set(openvino_int8.images_per_s) == {1, 4}
    report = RuntimesReport("prodgen-bench runtimes --models dcgan", {"cpu": "test"}, cpu_flags(), None, [row])
    text = markdown(report)
    assert "| dcgan | - | random | onnxruntime | fp32 |" in text
    assert set(report.cpu_flags) <= set(INT8_FLAGS)
