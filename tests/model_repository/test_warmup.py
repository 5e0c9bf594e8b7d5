"""The GPU configs carry `model_warmup` that Triton's parser accepts and that fits each model's tensors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from prodgen import zoo
from prodgen.model_repository.config import (
    BatchingOptions,
    onnxruntime_config,
    onnxruntime_tensorrt_fp16_config,
    parse_pbtxt,
    tensorrt_plan_config,
    to_pbtxt,
)
from prodgen.serve.python_backend_repository import python_backend_config


@pytest.mark.parametrize("name", ["cyclegan", "conditional-dcgan", "adain"])
@pytest.mark.parametrize("build", [onnxruntime_tensorrt_fp16_config, tensorrt_plan_config])
def test_gpu_configs_warm_up_every_input_at_the_tuned_side_for_one_image_and_a_full_batch(
    name: str, build: Callable[..., mc.ModelConfig]
) -> None:
    model = zoo.get(name)
    config = parse_pbtxt(to_pbtxt(build(model, name, BatchingOptions(max_batch_size=4))))
    assert [(w.batch_size, w.count) for w in config.model_warmup] == [(1, 1), (4, 1)]
    for warmup in config.model_warmup:
        assert set(warmup.inputs) == {spec.name for spec in model.inputs}
        for spec in model.inputs:
            data = warmup.inputs[spec.name]
            assert data.zero_data and mc.DataType.Name(data.data_type) == f"TYPE_{spec.dtype}"
            expected = [model.bounds.opt_side if d < 0 and model.bounds else d for d in spec.dims]
            assert list(data.dims) == expected and all(d > 0 for d in data.dims)


def test_cpu_configs_and_the_embedded_mirror_load_without_warmup() -> None:
    model = zoo.get("cyclegan")
    assert not onnxruntime_config(model, "cyclegan", BatchingOptions()).model_warmup
    gpu = onnxruntime_tensorrt_fp16_config(model, "cyclegan_fp16", BatchingOptions())
    assert not python_backend_config(gpu, 1).model_warmup
