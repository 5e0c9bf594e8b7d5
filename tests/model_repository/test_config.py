from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from prodgen import zoo
from prodgen.model_repository.config import BatchingOptions, onnxruntime_config, to_pbtxt


@pytest.mark.parametrize("name", ["dcgan", "fast-neural-style", "cyclegan"])
def test_config_parses_as_tritons_model_config(name: str) -> None:
    model = zoo.get(name)
    text = to_pbtxt(onnxruntime_config(model, f"shop-{name}", BatchingOptions(max_batch_size=16)))
    parsed = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert parsed.name == f"shop-{name}"
    assert parsed.backend == "onnxruntime"
    assert parsed.max_batch_size == 16
    assert parsed.HasField("dynamic_batching")
    assert [t.name for t in parsed.input] == [s.name for s in model.inputs]
    assert [t.name for t in parsed.output] == [s.name for s in model.outputs]
    for tensor, spec in zip(parsed.input, model.inputs):
        assert list(tensor.dims) == list(spec.dims)


def test_image_models_publish_their_bounds_and_task() -> None:
    config = onnxruntime_config(zoo.get("cyclegan"), "cyclegan", BatchingOptions())
    assert config.parameters["prodgen.task"].string_value == "stylize"
    assert int(config.parameters["prodgen.min_side"].string_value) == zoo.get("cyclegan").bounds.min_side


def test_batching_is_mandatory() -> None:
    with pytest.raises(ValueError):
        onnxruntime_config(zoo.get("dcgan"), "dcgan", BatchingOptions(max_batch_size=0))
