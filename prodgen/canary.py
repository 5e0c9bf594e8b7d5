"""The canary an export records and a rollout replays: sample inputs and the outputs they must give.

At export, one verification input (a real photo or a seeded latent) and ONNX Runtime's
outputs for it are saved beside the model as `canary.npz`, and its hash and tolerance go
into the version's provenance record. Before `prodgen deploy` lets a version take traffic,
it sends those inputs to the loaded version and refuses it unless the outputs match: a
corrupted upload, a wrong file in the version folder or a server that runs the graph
differently is caught before a shop sees it. Only numpy is needed, so the deploy side
stays free of torch.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prodgen.errors import ProdgenError

CANARY_FILE = "canary.npz"
_INPUT = "input/"
_OUTPUT = "output/"


@dataclass(frozen=True)
class Canary:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    min_fraction_within_one_level: float


@dataclass(frozen=True)
class CanaryVerdict:
    passed: bool
    fraction_within_one_level: float
    required_fraction: float
    detail: str

    def describe(self) -> str:
        return (
            f"{100 * self.fraction_within_one_level:.3f} % of output values within one level of the export's "
            f"(required ≥ {100 * self.required_fraction:.1f} %){'; ' + self.detail if self.detail else ''}"
        )


def write_canary(
    folder: Path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], min_fraction: float
) -> dict[str, object]:
    """Save the canary into a version folder; returns the provenance entry describing it."""
    buffer = io.BytesIO()
    arrays = {_INPUT + k: v for k, v in inputs.items()} | {_OUTPUT + k: v for k, v in outputs.items()}
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    (folder / CANARY_FILE).write_bytes(data)
    return {
        "file": CANARY_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "outputs": {k: list(v.shape) for k, v in outputs.items()},
        "min_fraction_within_one_level": min_fraction,
        "recorded_with": "ONNX Runtime (CPU) on the exported model.onnx",
    }


def read_canary(folder: Path, record: dict[str, object]) -> Canary:
    """Load and hash-check the canary that provenance `record` (its "canary" entry) describes."""
    path = folder / str(record.get("file", CANARY_FILE))
    if not path.is_file():
        raise ProdgenError(f"{folder} has no canary ({path.name}); re-export the model with this prodgen")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise ProdgenError(f"{path} does not match the hash recorded at export; the version folder was altered")
    with np.load(io.BytesIO(data)) as archive:
        inputs = {k[len(_INPUT) :]: archive[k] for k in archive.files if k.startswith(_INPUT)}
        outputs = {k[len(_OUTPUT) :]: archive[k] for k in archive.files if k.startswith(_OUTPUT)}
    return Canary(inputs, outputs, float(str(record.get("min_fraction_within_one_level", 0.999))))


def judge(canary: Canary, served: dict[str, np.ndarray]) -> CanaryVerdict:
    """Served outputs against the recorded ones: uint8 within one level, floats within 1e-3 relative."""
    close: list[np.ndarray] = []
    problems: list[str] = []
    for name, expected in canary.outputs.items():
        got = served.get(name)
        if got is None or got.shape != expected.shape or got.dtype != expected.dtype:
            shape = "missing" if got is None else f"{got.dtype}{list(got.shape)}"
            problems.append(f"output '{name}' is {shape}, expected {expected.dtype}{list(expected.shape)}")
            continue
        if expected.dtype == np.uint8:
            close.append(np.abs(got.astype(np.int32) - expected.astype(np.int32)).ravel() <= 1)
        else:
            close.append(np.isclose(got, expected, rtol=1e-3, atol=1e-3).ravel())
    fraction = float(np.concatenate(close).mean()) if close and not problems else 0.0
    required = canary.min_fraction_within_one_level
    return CanaryVerdict(not problems and fraction >= required, fraction, required, "; ".join(problems))
