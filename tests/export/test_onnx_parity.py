"""Per-architecture parity: the exported ONNX graph against the PyTorch serving graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prodgen import zoo
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import onnx_session, run_pytorch
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import sample_inputs


@pytest.mark.parametrize("name", ["dcgan", "fast-neural-style", "cyclegan"])
def test_onnx_matches_pytorch_on_real_inputs_at_several_sizes(name: str, tmp_path: Path) -> None:
    model = zoo.get(name)
    graph = serving_module(model)
    path = tmp_path / "model.onnx"
    export_onnx(graph, model, sample_inputs(model, batch=1, height=64), path)
    session = onnx_session(path)
    cases = [(3, 64, 64), (2, 75, 101)] if model.bounds else [(3, None, None), (2, None, None)]
    for batch, height, width in cases:
        inputs = sample_inputs(model, batch=batch, height=height, width=width, seed=batch)
        (expected,) = run_pytorch(graph, model, inputs)
        (actual,) = session.run(None, inputs)
        assert actual.dtype == np.uint8 and actual.shape == expected.shape
        within_one = np.mean(np.abs(actual.astype(int) - expected.astype(int)) <= 1)
        assert within_one >= 0.999


@pytest.mark.parametrize("name", ["fast-neural-style", "cyclegan"])
def test_image_models_keep_any_size_in_bounds(name: str, tmp_path: Path) -> None:
    model = zoo.get(name)
    graph = serving_module(model)
    path = tmp_path / "model.onnx"
    export_onnx(graph, model, sample_inputs(model, batch=1, height=64), path)
    inputs = sample_inputs(model, batch=1, height=66, width=83)
    (output,) = onnx_session(path).run(None, inputs)
    assert output.shape == (1, 66, 83, 3)
