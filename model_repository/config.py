"""config.pbtxt for each served model, built as Triton's own `ModelConfig` protobuf.

Building the message (rather than formatting text) means every config we write is one
Triton's parser accepts. prodgen's facts about a model (task, image bounds) travel as
`parameters` with a `prodgen.` prefix, so clients can read them from the server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from prodgen.contract import TensorSpec
from prodgen.model_facts import PARAMETER_PREFIX, PublishedFacts, to_parameters
from prodgen.model_repository.publish import ONNX_FILE, OPENVINO_FILE, PLAN_FILE
from prodgen.model_repository.warmup import add_model_warmup
from prodgen.tensorrt_defaults import DEFAULT_WORKSPACE_BYTES

if TYPE_CHECKING:  # the zoo imports torch; clients read configs through this module without it
    from prodgen.zoo.spec import ZooModel

_DATA_TYPES = {
    "UINT8": mc.TYPE_UINT8,
    "FP32": mc.TYPE_FP32,
    "FP16": mc.TYPE_FP16,
    "INT64": mc.TYPE_INT64,
    "BYTES": mc.TYPE_STRING,
    "BOOL": mc.TYPE_BOOL,
}
DATA_TYPE_NAMES = {value: key for key, value in _DATA_TYPES.items()}


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 8
    max_queue_delay_us: int = 100
    """How long the dynamic batcher may hold a request for company. Under load requests queue
    behind the busy instance and batch anyway; at low load a long delay is pure latency."""
    instance_count: int = 2
    """Model instances per device. Two, so that one instance takes the next batch while the other
    is still handing its answers back: with one, Triton's dynamic batcher (2.51, any queue policy,
    which turns its prefetching off) missed the wake-up of a request that arrived in that moment
    and held it for its 500 ms idle wait. Measured with `prodgen-bench peers dcgan` on 2 cores:
    ~1 % of requests took 505 ms at concurrency 1 and 8 with one instance; none with two."""
    max_queue_size: int = 0
    """Requests the server holds waiting for an instance before it refuses more (UNAVAILABLE,
    "Exceeds maximum queue size"); 0 leaves the queue unbounded, which under overload grows
    until clients time out while the server's memory grows with it."""
    queue_timeout_us: int = 0
    """A request still queued after this long is refused (UNAVAILABLE) instead of run late; 0: never."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1: every prodgen model batches")
        if self.max_queue_delay_us < 0 or self.instance_count < 1:
            raise ValueError("max_queue_delay_us must be at least 0 and instance_count at least 1")


MIN_QUEUED_BATCHES = 4


def queue_policy_for(items_per_second: float, latency_budget_s: float, max_batch_size: int) -> tuple[int, int]:
    """(max_queue_size, queue_timeout_us) so that a queued request is answered within the budget.

    A model that runs `items_per_second` drains `items_per_second × budget` single-item requests
    in the budget; more than that in the queue would be answered late anyway, so they are
    refused at once and a client can retry elsewhere. Four full batches may always wait, so
    clients with up to that many requests in flight are never refused for the queue's length,
    whatever the export machine measured (the budget's timeout still applies to them).
    """
    if items_per_second <= 0 or latency_budget_s <= 0:
        raise ValueError("the throughput and the latency budget must be positive")
    floor = MIN_QUEUED_BATCHES * max_batch_size
    return max(floor, int(items_per_second * latency_budget_s)), int(latency_budget_s * 1_000_000)


def _tensor(spec: TensorSpec, message: mc.ModelInput | mc.ModelOutput) -> None:
    message.name = spec.name
    message.data_type = _DATA_TYPES[spec.dtype]
    message.dims.extend(spec.dims)


def prodgen_parameters(model: ZooModel) -> dict[str, str]:
    """The model's published facts as config parameters (without the `prodgen.` prefix)."""
    return to_parameters(PublishedFacts(task=model.task, zoo_model=model.name, bounds=model.bounds, facts=model.facts))


def onnxruntime_config(model: ZooModel, served_name: str, batching: BatchingOptions) -> mc.ModelConfig:
    """A config for Triton's `onnxruntime` backend serving `model.onnx`."""
    config = mc.ModelConfig(
        name=served_name,
        backend="onnxruntime",
        default_model_filename=ONNX_FILE,
        max_batch_size=batching.max_batch_size,
    )
    for spec in model.inputs:
        _tensor(spec, config.input.add())
        if spec.optional:
            config.input[-1].optional = True
    for spec in model.outputs:
        _tensor(spec, config.output.add())
    config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
    if batching.max_queue_size > 0:
        policy = config.dynamic_batching.default_queue_policy
        policy.max_queue_size = batching.max_queue_size
        policy.timeout_action = mc.ModelQueuePolicy.REJECT
        policy.default_timeout_microseconds = batching.queue_timeout_us
        policy.allow_timeout_override = True
    group = config.instance_group.add()
    group.count = batching.instance_count
    group.kind = mc.ModelInstanceGroup.KIND_AUTO
    for key, value in prodgen_parameters(model).items():
        config.parameters[PARAMETER_PREFIX + key].string_value = value
    for key, value in input_range_parameters(model.inputs).items():
        config.parameters[PARAMETER_PREFIX + key].string_value = value
    return config


MEMORY_GIVEN_BACK = {"memory.enable_memory_arena_shrinkage": "cpu:0"}
"""Triton onnxruntime backend parameters (its README's "Model Config Options"; serve/onnx_model.py
reads the same names) under which a model's working memory goes back after each call: ONNX
Runtime's CPU arena otherwise keeps the largest call's activations for good, so a server that once
drew a large picture held that memory for every later small one. Measured (fast-neural-style ONNX,
2 threads, sides 256, 1024, 256, 512, 256, 1024, 256, 256 in turn, machine shared): resident memory
after the last 256² call 1150 MB with the arena as is, 85 MB with shrinkage, 109 MB with the arena off
(`enable_mem_arena` 0), which took 78 s for the sequence against 49 s and 56 s."""


def give_memory_back(config: mc.ModelConfig) -> mc.ModelConfig:
    """`config` with `MEMORY_GIVEN_BACK`: for models whose calls vary widely in size (diffusion components)."""
    for key, value in MEMORY_GIVEN_BACK.items():
        config.parameters[key].string_value = value
    return config


RANGE_KEY = "range."
"""`prodgen.range.<input>` = "low..high": the inclusive values an input accepts."""


def input_range_parameters(inputs: tuple[TensorSpec, ...]) -> dict[str, str]:
    return {RANGE_KEY + s.name: f"{s.value_range[0]:g}..{s.value_range[1]:g}" for s in inputs if s.value_range}


def parse_range(text: str) -> tuple[float, float]:
    low, high = text.split("..")
    return float(low), float(high)


def input_ranges(config: mc.ModelConfig) -> dict[str, tuple[float, float]]:
    """The `prodgen.range.<input>` parameters read back, so that a client checks them before sending:
    NVIDIA's onnxruntime backend serves the same config without checking values itself."""
    prefix = PARAMETER_PREFIX + RANGE_KEY
    return {
        key[len(prefix) :]: parse_range(value.string_value)
        for key, value in config.parameters.items()
        if key.startswith(prefix)
    }


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text exactly as Triton does; raises on unknown or malformed fields."""
    return text_format.Parse(text, mc.ModelConfig())


def tensor_specs(tensors: list[mc.ModelInput] | list[mc.ModelOutput]) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(t.name, DATA_TYPE_NAMES[t.data_type], tuple(t.dims), optional=getattr(t, "optional", False))
        for t in tensors
    )


TRT_ENGINE_CACHE_PATH = "/tmp/prodgen-trt-engine-cache"


def _on_gpu(config: mc.ModelConfig) -> None:
    count = sum(group.count for group in config.instance_group) or 1
    config.ClearField("instance_group")
    config.instance_group.add(count=count, kind=mc.ModelInstanceGroup.KIND_GPU)


def onnxruntime_tensorrt_fp16_config(
    model: ZooModel,
    served_name: str,
    batching: BatchingOptions,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    engine_cache_path: str = TRT_ENGINE_CACHE_PATH,
) -> mc.ModelConfig:
    """The FP16 ONNX on a GPU Triton: `onnxruntime` backend with its TensorRT accelerator at FP16.

    Parameter names are those of Triton's onnxruntime_backend README; the engine cache keeps
    TensorRT from rebuilding the engine on every model load.
    """
    config = onnxruntime_config(model, served_name, batching)
    _on_gpu(config)
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    accelerator.parameters["precision_mode"] = "FP16"
    accelerator.parameters["max_workspace_size_bytes"] = str(workspace_bytes)
    accelerator.parameters["trt_engine_cache_enable"] = "true"
    accelerator.parameters["trt_engine_cache_path"] = engine_cache_path
    return add_model_warmup(config, model.bounds.opt_side if model.bounds else None)


def tensorrt_plan_config(model: ZooModel, served_name: str, batching: BatchingOptions) -> mc.ModelConfig:
    """A config for Triton's TensorRT backend serving `model.plan`, same tensors and parameters."""
    config = onnxruntime_config(model, served_name, batching)
    config.ClearField("backend")
    config.platform = "tensorrt_plan"
    config.default_model_filename = PLAN_FILE
    _on_gpu(config)
    return add_model_warmup(config, model.bounds.opt_side if model.bounds else None)


OPENVINO_PARAMETERS = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
"""Triton openvino backend parameters (names from its README): one stream using every core per
request, the setting export measures OpenVINO with before it publishes the variant."""


def openvino_component_config(onnxruntime: mc.ModelConfig, served_name: str) -> mc.ModelConfig:
    """A diffusion component's onnxruntime config turned into one for Triton's `openvino` backend.

    `max_batch_size` 0, the batch dimension a -1 of every tensor, and no dynamic batcher: a
    component takes a guidance pair (2 rows) or a batch of pictures per call, and with a max batch
    above 0 the backend fixes the network's batch (see `openvino_config`). Instances and the
    prodgen parameters stay; ONNX Runtime's memory options go.
    """
    config = mc.ModelConfig()
    config.CopyFrom(onnxruntime)
    config.name = served_name
    config.backend = "openvino"
    config.default_model_filename = OPENVINO_FILE
    config.max_batch_size = 0
    config.ClearField("dynamic_batching")
    for tensor in [*config.input, *config.output]:
        tensor.dims.insert(0, -1)
    for group in config.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    for key in MEMORY_GIVEN_BACK:
        config.parameters.pop(key, None)
    for key, value in OPENVINO_PARAMETERS.items():
        config.parameters[key].string_value = value
    return config


def openvino_config(model: ZooModel, served_name: str, batching: BatchingOptions) -> mc.ModelConfig:
    """A config for Triton's `openvino` backend serving the IR `model.xml` on CPU, same tensors and parameters.

    `max_batch_size` is 1: with a non-zero max batch the backend fixes the network's batch at
    that size (`ov::set_batch`) and fails any execution whose requests add up to less, unless
    ENABLE_BATCH_PADDING pads them, which computes the whole max batch for a single image. At 1
    every request is one image, computed once; the prodgen client splits batches to fit.
    """
    config = onnxruntime_config(model, served_name, replace(batching, max_batch_size=1))
    config.backend = "openvino"
    config.default_model_filename = OPENVINO_FILE
    for group in config.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    for key, value in OPENVINO_PARAMETERS.items():
        config.parameters[key].string_value = value
    return config
