"""Triton gRPC request pieces from the served tensor specs: one way for the client and the benchmarks.

tritonclient and numpy are imported when a request is built, not with this module, so that
the benchmarks' direct mode runs where tritonclient is not installed and the `prodgen` CLI
reads the default URL without loading either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import tritonclient.grpc as grpcclient

    from prodgen.contract import TensorSpec

DEFAULT_URL = "localhost:8001"
"""Triton's gRPC endpoint on this machine, where `prodgen serve` listens by default."""


def infer_inputs(specs: Sequence[TensorSpec], arrays: Mapping[str, np.ndarray]) -> list[grpcclient.InferInput]:
    """One `InferInput` for each spec that `arrays` has a value for (optional inputs may be left out)."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    tensors = []
    for spec in specs:
        if spec.name not in arrays:
            continue
        array = np.ascontiguousarray(arrays[spec.name])
        tensor = grpcclient.InferInput(spec.name, list(array.shape), spec.dtype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def requested_outputs(specs: Sequence[TensorSpec]) -> list[grpcclient.InferRequestedOutput]:
    import tritonclient.grpc as grpcclient

    return [grpcclient.InferRequestedOutput(spec.name) for spec in specs]
