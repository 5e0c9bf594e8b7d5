"""The model behind a peer: the zoo network with prodgen's served contract in eager PyTorch,
or the repository's model.onnx in ONNX Runtime; both take and give named arrays.

Peers run the same serving graph (uint8 NHWC photos or FP32 latents in, uint8 NHWC pictures
out) that prodgen exports, built from the same checkpoint, so their pictures can be checked
against prodgen's before anything is timed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prodgen.bench.peers.wire import Arrays


class TorchModel:
    """Eager PyTorch, as a service author would run it: `inference_mode`, PyTorch's default threads."""

    def __init__(self, model: str, checkpoint: Sequence[Path] = (), seed: int = 0) -> None:
        from prodgen import zoo
        from prodgen.zoo.loading import serving_module

        entry = zoo.get(model)
        weights = None if not checkpoint else checkpoint[0] if len(checkpoint) == 1 else list(checkpoint)
        self.module = serving_module(entry, weights, seed)
        self.input_names = [spec.name for spec in entry.inputs]
        self.output_names = [spec.name for spec in entry.outputs]

    def __call__(self, arrays: Arrays) -> Arrays:
        import torch

        missing = [name for name in self.input_names if name not in arrays]
        if missing:
            raise ValueError(f"missing input(s): {', '.join(missing)}; the model takes {', '.join(self.input_names)}")
        with torch.inference_mode():
            result = self.module(*(torch.from_numpy(np.array(arrays[name])) for name in self.input_names))
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        return {name: tensor.numpy() for name, tensor in zip(self.output_names, outputs, strict=True)}


class OnnxRuntimeModel:
    """ONNX Runtime with its default session options, as its documentation's first example opens one."""

    def __init__(self, onnx_path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]

    def __call__(self, arrays: Arrays) -> Arrays:
        missing = [name for name in self.input_names if name not in arrays]
        if missing:
            raise ValueError(f"missing input(s): {', '.join(missing)}; the model takes {', '.join(self.input_names)}")
        outputs = self.session.run(self.output_names, {name: arrays[name] for name in self.input_names})
        return dict(zip(self.output_names, outputs, strict=True))
