"""Peer (c): PyTriton's `Triton.bind` around the eager PyTorch model, as PyTriton's
documentation shows it: an inference function under the `@batch` decorator, Triton's
dynamic batcher on (same max batch size and queue delay as prodgen's published config),
clients speaking Triton's gRPC protocol exactly as they do to prodgen.

    python -m prodgen.bench.peers.pytriton_torch --model dcgan --port 9002 --http-port 9003 --metrics-port 9004

PyTriton starts the `tritonserver` bundled with it; its python stub needs the same
environment prodgen's embedded server gives it (`prodgen.serve.triton_distribution`), which
`prodgen-bench peers` passes when it starts this module.
"""

from __future__ import annotations

import numpy as np

from prodgen.bench.peers.app_args import peer_arguments
from prodgen.bench.peers.models import TorchModel
from prodgen.model_repository.config import BatchingOptions

NUMPY_TYPES = {"UINT8": np.uint8, "FP32": np.float32, "INT64": np.int64}


def main() -> None:
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from prodgen import zoo

    args = peer_arguments(__doc__ or "")
    entry = zoo.get(args.model)
    model = TorchModel(args.model, args.checkpoint, args.seed)

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return model(inputs)

    config = TritonConfig(
        grpc_address=args.host,
        grpc_port=args.port,
        http_address=args.host,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.name or args.model,
            infer_func=infer,
            inputs=[Tensor(name=s.name, dtype=NUMPY_TYPES[s.dtype], shape=s.dims) for s in entry.inputs],
            outputs=[Tensor(name=s.name, dtype=NUMPY_TYPES[s.dtype], shape=s.dims) for s in entry.outputs],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=BatchingOptions.max_queue_delay_us),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
