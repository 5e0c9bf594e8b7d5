"""PyTorch serving graph → ONNX, with a dynamic batch and dynamic image sides."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from prodgen.contract import TensorSpec
from prodgen.zoo.spec import ZooModel

OPSET = 17


def dynamic_axes(specs: tuple[TensorSpec, ...]) -> dict[str, dict[int, str]]:
    """Batch is axis 0 of every tensor; each -1 dimension gets its own symbolic name."""
    axes: dict[str, dict[int, str]] = {}
    for spec in specs:
        named = {0: "batch"}
        for index, size in enumerate(spec.dims, start=1):
            if size < 0:
                named[index] = f"{spec.name}_dim{index}"
        axes[spec.name] = named
    return axes


def export_onnx(
    graph: nn.Module, model: ZooModel, example: dict[str, np.ndarray], path: Path, opset: int = OPSET
) -> onnx.ModelProto:
    """`trace_onnx`, then the checked graph loaded back."""
    trace_onnx(graph, model, example, path, opset)
    return onnx.load(str(path))


def trace_onnx(
    graph: nn.Module, model: ZooModel, example: dict[str, np.ndarray], path: Path, opset: int = OPSET
) -> None:
    """Trace `graph` to `path` and check the result with `onnx.checker` (from the file: nothing of a
    graph over 2 GB, whose weights the exporter writes beside it, is loaded).

    The TorchScript-based exporter is used on purpose: it records the shape arithmetic
    of in-graph padding as ONNX ops, where the dynamo exporter needs shape constraints
    for every model; both produce the same standard opset.
    """
    args = tuple(torch.from_numpy(example[spec.name]) for spec in model.inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            args,
            str(path),
            dynamo=False,
            input_names=[spec.name for spec in model.inputs],
            output_names=[spec.name for spec in model.outputs],
            dynamic_axes=dynamic_axes(model.inputs + model.outputs),
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path), full_check=True)
