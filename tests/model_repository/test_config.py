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
    for tensor, spec in zip(parsed.input, model.inputs, strict=True):
        assert list(tensor.dims) == list(spec.dims)


def test_image_models_publish_their_bounds_and_task() -> None:
    config = onnxruntime_config(zoo.get("cyclegan"), "cyclegan", BatchingOptions())
    assert config.parameters["prodgen.task"].string_value == "stylize"
    bounds = zoo.get("cyclegan").bounds
    assert bounds is not None and int(config.parameters["prodgen.min_side"].string_value) == bounds.min_side


def test_batching_is_mandatory() -> None:
    with pytest.raises(ValueError):
        onnxruntime_config(zoo.get("dcgan"), "dcgan", BatchingOptions(max_batch_size=0))


def test_fp16_onnx_and_tensorrt_plan_configs_parse_with_the_same_tensors_and_parameters() -> None:
    from prodgen.model_repository.config import onnxruntime_tensorrt_fp16_config, tensorrt_plan_config

    model = zoo.get("cyclegan")
    base = onnxruntime_config(model, "cyclegan", BatchingOptions(max_batch_size=4))
    fp16 = text_format.Parse(
        to_pbtxt(onnxruntime_tensorrt_fp16_config(model, "cyclegan_fp16", BatchingOptions(max_batch_size=4))),
        model_config_pb2.ModelConfig(),
    )
    plan = text_format.Parse(
        to_pbtxt(tensorrt_plan_config(model, "cyclegan_trt", BatchingOptions(max_batch_size=4))),
        model_config_pb2.ModelConfig(),
    )
    assert fp16.backend == "onnxruntime" and fp16.default_model_filename == "model.onnx"
    (accelerator,) = fp16.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert (
        accelerator.parameters["trt_engine_cache_enable"] == "true" and accelerator.parameters["trt_engine_cache_path"]
    )
    assert int(accelerator.parameters["max_workspace_size_bytes"]) > 0
    assert plan.platform == "tensorrt_plan" and not plan.backend and plan.default_model_filename == "model.plan"
    for config in (fp16, plan):
        assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
        assert list(config.input) == list(base.input) and list(config.output) == list(base.output)
        assert dict(config.parameters) == dict(base.parameters)
        assert config.max_batch_size == 4 and config.HasField("dynamic_batching")
