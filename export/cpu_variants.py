"""The CPU variants beside the FP32 `<name>`: `<name>_int8` (QDQ ONNX) and `<name>_openvino`
(OpenVINO IR), each published only where it is inside its fidelity gate AND faster than FP32
ONNX Runtime on this machine. Either way the export says what was measured and decided."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prodgen.errors import ProdgenError
from prodgen.export.cpu_race import Race, race, served_session
from prodgen.export.fidelity import Cases
from prodgen.export.int8 import Int8Outcome, int8_with_fallback, openvino_int8
from prodgen.export.openvino_variant import OpenVinoOutcome, check_openvino
from prodgen.model_repository.config import BatchingOptions, onnxruntime_config, openvino_config, to_pbtxt
from prodgen.model_repository.publish import ONNX_FILE, OPENVINO_FILE, PublishedVersion, publish
from prodgen.openvino_runtime import openvino_version
from prodgen.zoo.spec import ZooModel

INT8_RECORD = "prodgen-int8.json"
OPENVINO_SUFFIX = "_openvino"
INT8_OPENVINO_SUFFIX = "_int8_openvino"
"""An INT8 QDQ graph as OpenVINO IR: OpenVINO runs QDQ convolutions and deconvolutions as int8 kernels of its own."""
OPENVINO_RECORD = "prodgen-openvino.json"


@dataclass
class Variant:
    """One CPU variant's outcome: published or not, and the lines that say why."""

    name: str
    published: PublishedVersion | None = None
    notes: list[str] = field(default_factory=list)
    int8: Int8Outcome | None = None
    openvino: OpenVinoOutcome | None = None
    race: Race | None = None


@dataclass(frozen=True)
class VariantContext:
    """What both variants need from the FP32 export."""

    model: ZooModel
    served_name: str
    repository: Path
    batching: BatchingOptions
    onnx_path: Path
    work: Path
    cases: Cases
    reference: Sequence[Sequence[np.ndarray]]
    provenance: dict[str, object]


def _race_record(measured: Race) -> dict[str, object]:
    return {**asdict(measured), "speedup": {str(b): measured.speedup(b) for b in measured.baseline_ms}}


def int8_variant(context: VariantContext, min_psnr_db: float, min_ssim: float) -> Variant:
    model, name = context.model, f"{context.served_name}_int8"
    variant = Variant(name)
    try:
        outcome = int8_with_fallback(
            context.onnx_path, context.work, model, context.cases, context.reference, min_psnr_db, min_ssim, name
        )
    except ProdgenError as refusal:
        variant.notes.append(str(refusal))
        return variant
    variant.int8 = outcome
    variant.notes.append(f"INT8 fidelity: {outcome.final.describe()}")
    variant.notes.append(f"INT8: {outcome.describe_layers()}")
    names = [spec.name for spec in model.outputs]
    fp32, int8 = served_session(context.onnx_path), served_session(outcome.path)
    variant.race = race(model, "INT8 ONNX Runtime", lambda f: fp32.run(names, f), lambda f: int8.run(names, f))
    variant.notes.append(f"INT8: {variant.race.describe()}")
    if not variant.race.wins:
        variant.notes.append(f"INT8: {name} not published: not faster than FP32 ONNX Runtime here")
        return variant
    variant.published = publish_int8(context, outcome, variant.race)
    variant.notes.append(f"INT8: published {name} version {variant.published.version} (QDQ ONNX)")
    return variant


def publish_int8(context: VariantContext, outcome: Int8Outcome, measured: Race) -> PublishedVersion:
    name = f"{context.served_name}_int8"
    record = {
        **context.provenance,
        "int8": {
            "gate": "INT8 QDQ graph run by ONNX Runtime vs FP32 PyTorch on the verification inputs",
            "first_try": asdict(outcome.first),
            "published": asdict(outcome.final),
            "kept_fp32": outcome.kept_fp32,
            "int8_layers": outcome.quantised_layers,
            "race": _race_record(measured),
        },
    }

    def write(folder: Path) -> None:
        shutil.copyfile(outcome.path, folder / ONNX_FILE)
        (folder / INT8_RECORD).write_text(json.dumps(record, indent=2) + "\n")

    config = to_pbtxt(onnxruntime_config(context.model, name, context.batching))
    return publish(context.repository, name, write, lambda _v: config)


def openvino_variant(context: VariantContext, min_psnr_db: float) -> Variant:
    outcome = check_openvino(
        context.onnx_path, context.work, context.model, context.cases, context.reference, min_psnr_db
    )
    return _openvino_decision(context, outcome, "OpenVINO", OPENVINO_SUFFIX)


def int8_openvino_variant(
    context: VariantContext, onnx_runtime_int8: Int8Outcome | None, min_psnr_db: float, min_ssim: float
) -> Variant:
    """An INT8 QDQ graph inside the INT8 gate (`export.int8.openvino_int8`: ONNX Runtime's, or one that
    also quantises ConvTranspose) on OpenVINO, which runs its FP32 layers at its own precision:
    checked again through the same gate."""
    name = context.served_name + INT8_OPENVINO_SUFFIX
    try:
        graph = openvino_int8(
            context.onnx_path, context.work / "int8-openvino", context.model, context.cases, context.reference,
            onnx_runtime_int8, min_psnr_db, min_ssim, name,
        )  # fmt: skip
    except ProdgenError as refusal:
        return Variant(name, notes=[f"INT8 OpenVINO: {refusal}"])
    notes = [] if graph is onnx_runtime_int8 else [f"INT8 OpenVINO: {graph.describe_layers()}"]
    outcome = check_openvino(
        context.onnx_path, context.work / "int8-openvino", context.model, context.cases, context.reference,
        graph.final.min_psnr_db, source=graph.path, min_ssim=graph.final.min_ssim,
    )  # fmt: skip
    return _openvino_decision(context, outcome, "INT8 OpenVINO", INT8_OPENVINO_SUFFIX, graph, notes)


def _openvino_decision(
    context: VariantContext,
    outcome: OpenVinoOutcome,
    label: str,
    suffix: str,
    int8: Int8Outcome | None = None,
    notes: Sequence[str] = (),
) -> Variant:
    name = context.served_name + suffix
    variant = Variant(name, notes=list(notes), openvino=outcome, race=outcome.race)
    variant.notes.append(f"{label} ({outcome.precision} on this CPU) fidelity: {outcome.fidelity.describe()}")
    variant.notes.append(f"{label}: {outcome.race.describe()}")
    if not outcome.publish:
        variant.notes.append(f"{label}: {name} {outcome.verdict()}")
        return variant
    variant.published = publish_openvino(context, outcome, suffix, int8)
    variant.notes.append(f"{label}: published {name} version {variant.published.version} (OpenVINO IR, max batch 1)")
    return variant


def publish_openvino(
    context: VariantContext, outcome: OpenVinoOutcome, suffix: str = OPENVINO_SUFFIX, int8: Int8Outcome | None = None
) -> PublishedVersion:
    """`int8`: the QDQ graph the IR was converted from, for `<name>_int8_openvino`."""
    name = context.served_name + suffix
    quantised = (
        {"int8_layers": int8.quantised_layers, "quantised_ops": list(int8.quantised_ops), "kept_fp32": int8.kept_fp32}
        if int8 is not None
        else {}
    )
    record = {
        **context.provenance,
        "openvino": {
            "version": openvino_version(),
            "inference_precision_here": outcome.precision,
            "source": "INT8 QDQ ONNX" if int8 is not None else "FP32 ONNX",
            **quantised,
            "gate": "OpenVINO CPU plugin (published settings) vs FP32 PyTorch on the verification inputs",
            "fidelity": asdict(outcome.fidelity),
            "race": _race_record(outcome.race),
        },
    }

    def write(folder: Path) -> None:
        shutil.copyfile(outcome.xml_path, folder / OPENVINO_FILE)
        shutil.copyfile(outcome.xml_path.with_suffix(".bin"), (folder / OPENVINO_FILE).with_suffix(".bin"))
        (folder / OPENVINO_RECORD).write_text(json.dumps(record, indent=2) + "\n")

    config = to_pbtxt(openvino_config(context.model, name, context.batching))
    return publish(context.repository, name, write, lambda _v: config)
