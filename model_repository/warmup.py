"""`model_warmup` for the GPU configs: Triton runs these requests at load, before readiness.

TensorRT (a plan's execution contexts) and ONNX Runtime's TensorRT accelerator (which builds
its engine on the first call with a new shape, minutes for a large network) would otherwise
make a shop's first requests pay for the engine build. With warmup in the config the
server builds them while loading, and `/v2/health/ready` (strict readiness) stays false until
they are done, so a load balancer sends no traffic to a replica still building.

The warmup inputs come from the config's own tensors: zeros, at the model's tuned image
side (the TensorRT profile's opt shape) where a dimension is dynamic, once with one image
and once with a full batch, the two shapes a dynamic batcher sends most.
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

DEFAULT_DYNAMIC_SIDE = 64
"""For a dynamic dimension of a model without image bounds (none in the zoo today)."""


def add_model_warmup(config: mc.ModelConfig, opt_side: int | None) -> mc.ModelConfig:
    """Add zero-data warmup requests for batch 1 and max_batch_size; returns `config`."""
    side = opt_side or DEFAULT_DYNAMIC_SIDE
    config.ClearField("model_warmup")
    for batch in sorted({1, max(config.max_batch_size, 1)}):
        warmup = config.model_warmup.add(name=f"prodgen-opt-side-batch-{batch}", batch_size=batch, count=1)
        for tensor in config.input:
            data = warmup.inputs[tensor.name]
            data.data_type = tensor.data_type
            data.dims.extend(side if dim < 0 else dim for dim in tensor.dims)
            data.zero_data = True
    return config
