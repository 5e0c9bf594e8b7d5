"""The FP16 gate on a graph whose weights are external data, loaded without them (the path for graphs over 2 GB).

A small zoo network stands in for an SDXL UNet: saved as model.onnx + model.onnx.data and loaded with
`load_external_data=False`, it must convert, pass the gate and save to one data file exactly as the same
graph converted in memory does, without its weights ever entering the converted proto.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from prodgen import zoo
from prodgen.export.external_data import gather_external_data, save_with_external_data
from prodgen.export.fidelity import fp16_with_fallback
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import onnx_session, run_pytorch
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import sample_inputs

DATA = "model.onnx.data"


def test_fp16_gate_runs_on_external_data_and_matches_the_in_memory_path(tmp_path: Path) -> None:
    spec = zoo.get("fast-neural-style")
    graph = serving_module(spec)
    cases = [sample_inputs(spec, batch=1, height=32)]
    reference = [run_pytorch(graph, spec, case) for case in cases]
    inline = tmp_path / "inline" / "model.onnx"
    inline.parent.mkdir()
    in_memory = export_onnx(graph, spec, cases[0], inline)
    weights = tmp_path / "external"
    weights.mkdir()
    gather_external_data(inline, weights / "model.onnx", DATA)
    assert (weights / DATA).stat().st_size > 1_000_000

    weightless = onnx.load(str(weights / "model.onnx"), load_external_data=False)
    external = fp16_with_fallback(weightless, spec, cases, reference, weights=weights)
    expected = fp16_with_fallback(in_memory, spec, cases, reference)

    assert external.final.passed and external.final.psnr_db == expected.final.psnr_db
    assert external.graph.fp16_nodes == expected.graph.fp16_nodes
    converted = external.graph.model
    assert converted.ByteSize() < (weights / DATA).stat().st_size / 10, "the converted proto carries no weights"
    stored = [init for init in converted.graph.initializer if init.data_location == TensorProto.EXTERNAL]
    assert any(init.data_type == TensorProto.FLOAT16 for init in stored)

    target = tmp_path / "fp16" / "model.onnx"
    target.parent.mkdir()
    save_with_external_data(converted, weights, target, DATA)
    onnx.checker.check_model(str(target), full_check=True)
    assert sorted(path.name for path in target.parent.iterdir()) == ["model.onnx", DATA]
    names = [output.name for output in spec.outputs]
    from_file = onnx_session(target).run(names, cases[0])
    from_memory = onnx_session(expected.graph.model).run(names, cases[0])
    for got, want in zip(from_file, from_memory, strict=True):
        np.testing.assert_array_equal(got, want)
