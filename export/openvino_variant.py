"""`--openvino`: the verified ONNX as OpenVINO IR, checked against PyTorch and raced against ONNX Runtime.

OpenVINO's CPU plugin picks its own inference precision: bfloat16 on CPUs with native bf16
(AVX512_BF16 or AMX), FP32 elsewhere, and Triton's openvino backend has no parameter to
force FP32 (only HINT_BF16 to ask for bf16); a `runtime_options` entry in the IR's rt_info
is ignored for it (measured, OpenVINO 2026.4). So the variant is checked the way it will
run: compiled with the published settings, at the precision the plugin chooses on this
machine (recorded), against FP32 PyTorch through the FP16 gate (`DEFAULT_MIN_PSNR_DB`). A
CPU without native bf16 runs it in FP32, closer to PyTorch than the check here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prodgen.errors import ProdgenError
from prodgen.export.cpu_race import Race, race, served_session
from prodgen.export.fidelity import DEFAULT_MIN_PSNR_DB, Cases, Fidelity, compare_fidelity
from prodgen.model_repository.publish import OPENVINO_FILE
from prodgen.openvino_runtime import MISSING, inference_precision, openvino_available, openvino_runner, save_ir
from prodgen.zoo.spec import ZooModel


@dataclass(frozen=True)
class OpenVinoOutcome:
    xml_path: Path
    fidelity: Fidelity
    precision: str
    """The inference precision OpenVINO's CPU plugin chose on this machine (bf16 or f32)."""
    race: Race

    @property
    def publish(self) -> bool:
        return self.fidelity.passed and self.race.wins

    def verdict(self) -> str:
        if not self.fidelity.passed:
            return f"not published: outside the fidelity gate ({self.fidelity.describe()})"
        if not self.race.wins:
            return "not published: not faster than FP32 ONNX Runtime here"
        return "published: inside the gate and faster than FP32 ONNX Runtime here"


def check_openvino(
    onnx_path: Path,
    work: Path,
    model: ZooModel,
    cases: Cases,
    reference: Sequence[Sequence[np.ndarray]],
    min_psnr_db: float = DEFAULT_MIN_PSNR_DB,
    side: int | None = None,
    source: Path | None = None,
    min_ssim: float | None = None,
) -> OpenVinoOutcome:
    """Convert `source` (default: the FP32 `onnx_path`; the INT8 QDQ graph for `<name>_int8_openvino`) to IR
    in `work`, check it against FP32 PyTorch on `cases`, and race it against FP32 ONNX Runtime on `onnx_path`."""
    if not openvino_available():
        raise ProdgenError(MISSING)
    work.mkdir(parents=True, exist_ok=True)
    xml_path = work / OPENVINO_FILE
    save_ir(source or onnx_path, xml_path)
    names = [spec.name for spec in model.outputs]
    run = openvino_runner(xml_path, names)
    fidelity = compare_fidelity(run, len(names), cases, reference, min_psnr_db, min_ssim)
    session = served_session(onnx_path)
    label = "OpenVINO" if source is None else "INT8 OpenVINO"
    measured = race(model, label, lambda feed: session.run(names, feed), run, side)
    return OpenVinoOutcome(xml_path, fidelity, inference_precision(), measured)
