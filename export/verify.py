"""Every export is verified before it is published: ONNX Runtime against PyTorch on real inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prodgen.export.fidelity import describe_ssim, lowest_of, lowest_ssim
from prodgen.onnx_sessions import onnx_session
from prodgen.zoo.spec import ZooModel


@dataclass(frozen=True)
class Parity:
    """How far exported uint8 outputs are from PyTorch's, over all verification cases."""

    values: int
    max_abs_diff: int
    mean_abs_diff: float
    fraction_within_one_level: float
    required_fraction: float
    lowest_ssim: float | None
    """SSIM of the least similar picture over all cases; None when the outputs are smaller than its window."""

    @property
    def passed(self) -> bool:
        return self.fraction_within_one_level >= self.required_fraction

    def describe(self) -> str:
        return (
            f"{100 * self.fraction_within_one_level:.4f} % of {self.values:,} output values within 1 uint8 level "
            f"(required ≥ {100 * self.required_fraction:.1f} %), max |Δ| {self.max_abs_diff}, "
            f"mean |Δ| {self.mean_abs_diff:.5f}, {describe_ssim(self.lowest_ssim)}"
        )


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray], required_fraction: float) -> Parity:
    diffs = np.concatenate(
        [np.abs(r.astype(np.int32) - c.astype(np.int32)).ravel() for r, c in zip(reference, candidate, strict=True)]
    )
    return Parity(
        values=int(diffs.size),
        max_abs_diff=int(diffs.max()),
        mean_abs_diff=float(diffs.mean()),
        fraction_within_one_level=float(np.mean(diffs <= 1)),
        required_fraction=required_fraction,
        lowest_ssim=lowest_of(lowest_ssim(r, c) for r, c in zip(reference, candidate, strict=True)),
    )


def run_pytorch(graph: nn.Module, model: ZooModel, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The serving graph's outputs; inputs are copied, since tiles and decoded photos may be read-only views."""
    with torch.no_grad():
        result = graph(*(torch.from_numpy(np.array(inputs[spec.name])) for spec in model.inputs))
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    return [tensor.numpy() for tensor in outputs]


def verify_onnx(graph: nn.Module, model: ZooModel, onnx_path: Path, cases: list[dict[str, np.ndarray]]) -> Parity:
    session = onnx_session(onnx_path)
    reference: list[np.ndarray] = []
    candidate: list[np.ndarray] = []
    for inputs in cases:
        expected = run_pytorch(graph, model, inputs)
        actual = session.run([spec.name for spec in model.outputs], inputs)
        for spec, want, got in zip(model.outputs, expected, actual, strict=True):
            if want.shape != got.shape:
                raise RuntimeError(f"{spec.name}: ONNX gave shape {got.shape}, PyTorch {want.shape}")
        reference += expected
        candidate += actual
    return compare_outputs(reference, candidate, model.min_fraction_within_one_level)
