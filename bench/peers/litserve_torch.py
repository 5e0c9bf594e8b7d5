"""Peer (d): LitServe with its batching on, running the eager PyTorch model.

As LitServe's documentation lays out a batched API: the model is loaded in `setup`, one
request is one item (`decode_request` drops the request's batch axis of 1), LitServe
gathers up to `max_batch_size` items for at most `batch_timeout` seconds, `batch` stacks
them, `predict` runs them as one call and `unbatch` hands each request its own picture.
Request and response bodies are JSON (`prodgen.bench.peers.wire`).

    python -m prodgen.bench.peers.litserve_torch --model dcgan --port 9005

LitServe reads `decode_request`'s annotation at run time to validate the body (a pydantic
model, as its documentation shows), so this module keeps its annotations evaluated.
"""

from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np

from prodgen.bench.peers.app_args import peer_arguments
from prodgen.bench.peers.models import TorchModel
from prodgen.bench.peers.wire import Arrays, PredictRequest, PredictResponse, decode_arrays, encode_arrays

BATCH_TIMEOUT_S = 0.01
"""How long LitServe waits to fill a batch: short beside a style network's 200 ms per image,
so a lone request is not held, and long enough that requests in flight together meet."""


class ImageModelAPI(ls.LitAPI):
    def __init__(self, model: str, checkpoint: list[Path], seed: int, **batching: Any) -> None:
        super().__init__(**batching)
        self.model_name, self.checkpoint, self.seed = model, checkpoint, seed

    def setup(self, device: str) -> None:
        self.model = TorchModel(self.model_name, self.checkpoint, self.seed)

    def decode_request(self, request: PredictRequest) -> Arrays:
        arrays = decode_arrays(request.inputs)
        if any(array.shape[:1] != (1,) for array in arrays.values()):
            raise ValueError("this service takes one item per request (batch axis of 1)")
        return {name: array[0] for name, array in arrays.items()}

    def batch(self, inputs: list[Arrays]) -> Arrays:
        return {name: np.stack([item[name] for item in inputs]) for name in inputs[0]}

    def predict(self, x: Arrays) -> Arrays:
        return self.model(x)

    def unbatch(self, output: Arrays) -> list[Arrays]:
        count = len(next(iter(output.values())))
        return [{name: array[index] for name, array in output.items()} for index in range(count)]

    def encode_response(self, output: Arrays) -> PredictResponse:
        return PredictResponse(outputs=encode_arrays({name: array[None] for name, array in output.items()}))


def main() -> None:
    args = peer_arguments(__doc__ or "")
    api = ImageModelAPI(
        args.model, args.checkpoint, args.seed, max_batch_size=args.max_batch_size, batch_timeout=BATCH_TIMEOUT_S
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
