"""The `<name>_openvino` variant's config: one NVIDIA's Triton loads with its openvino backend."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from prodgen import zoo
from prodgen.model_repository.config import BatchingOptions, onnxruntime_config, openvino_config, parse_pbtxt, to_pbtxt
from prodgen.serve.python_backend_repository import python_backend_config


def test_openvino_config_parses_as_tritons_model_config_with_the_same_tensors_and_facts() -> None:
    model = zoo.get("fast-neural-style")
    batching = BatchingOptions(max_batch_size=8, instance_count=2, max_queue_size=32, queue_timeout_us=5_000_000)
    base = onnxruntime_config(model, "look", batching)
    config = parse_pbtxt(to_pbtxt(openvino_config(model, "look_openvino", batching)))
    assert config.name == "look_openvino" and config.backend == "openvino" and not config.platform
    assert config.default_model_filename == "model.xml"
    assert list(config.input) == list(base.input) and list(config.output) == list(base.output)
    assert config.max_batch_size == 1  # the backend pins the network's batch at max_batch_size
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 32
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert config.parameters["PERFORMANCE_HINT"].string_value == "LATENCY"
    assert config.parameters["NUM_STREAMS"].string_value == "1"
    for key, value in base.parameters.items():
        assert config.parameters[key] == value


def test_the_embedded_server_runs_it_as_a_python_model_through_openvino() -> None:
    config = openvino_config(zoo.get("dcgan"), "dcgan_openvino", BatchingOptions())
    mirrored = parse_pbtxt(to_pbtxt(python_backend_config(config, intra_op_threads=2)))
    assert mirrored.backend == "python" and not mirrored.default_model_filename
    assert mirrored.parameters["prodgen.runtime"].string_value == "openvino"
    assert mirrored.parameters["PERFORMANCE_HINT"].string_value == "LATENCY"
    assert mirrored.max_batch_size == 1
