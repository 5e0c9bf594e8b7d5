"""`--fp16`: publish `<name>_fp16` (FP16 ONNX, onnxruntime + TensorRT accelerator) and,
where TensorRT is importable, `<name>_trt` (model.plan) beside the FP32 `<name>`."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prodgen.export.fidelity import Fp16Outcome
from prodgen.export.tensorrt_build import (
    TIMING_CACHE_FILE,
    build_plan,
    profile_shapes,
    tensorrt_available,
    trtexec_shape_arguments,
    write_plan_record,
)
from prodgen.model_repository.config import (
    BatchingOptions,
    onnxruntime_tensorrt_fp16_config,
    tensorrt_plan_config,
    to_pbtxt,
)
from prodgen.model_repository.publish import ONNX_FILE, PLAN_FILE, PublishedVersion, publish
from prodgen.zoo.spec import ZooModel

FIDELITY_FILE = "prodgen-fp16.json"
PLAN_RECIPE_FILE = "tensorrt-build.json"
"""What docker/build_plan.sh reads: trtexec shapes and the plan model's config, so nobody types them."""


@dataclass
class Fp16Published:
    fp16: PublishedVersion
    plan: PublishedVersion | None
    notes: list[str] = field(default_factory=list)


def _fidelity_record(outcome: Fp16Outcome) -> dict[str, object]:
    return {
        "gate": "FP16 emulation (every FP16 tensor rounded) vs FP32 PyTorch on the verification inputs",
        "first_try": asdict(outcome.first),
        "published": asdict(outcome.final),
        "kept_fp32": list(outcome.kept_fp32),
        "kept_by_fallback": outcome.kept_by_fallback,
        "fp16_nodes": len(outcome.graph.fp16_nodes),
    }


def publish_fp16(
    model: ZooModel,
    served_name: str,
    repository: Path,
    batching: BatchingOptions,
    fp32_onnx: Path,
    fp16_onnx: Path,
    outcome: Fp16Outcome,
    provenance: dict[str, object],
) -> Fp16Published:
    fp16_name = f"{served_name}_fp16"
    plan_name = f"{served_name}_trt"
    shapes = profile_shapes(model, batching.max_batch_size)
    plan_config = to_pbtxt(tensorrt_plan_config(model, plan_name, batching))
    record = {**provenance, "fp16": _fidelity_record(outcome)}

    def write_fp16(folder: Path) -> None:
        shutil.copyfile(fp16_onnx, folder / ONNX_FILE)
        external_data = fp16_onnx.with_name(fp16_onnx.name + ".data")  # graphs over 2 GB keep their weights beside
        if external_data.is_file():
            shutil.copyfile(external_data, folder / f"{ONNX_FILE}.data")
        (folder / FIDELITY_FILE).write_text(json.dumps(record, indent=2) + "\n")
        recipe = {
            "plan_model": plan_name,
            "trtexec_shapes": trtexec_shape_arguments(shapes),
            "plan_config_pbtxt": plan_config,
        }
        (folder / PLAN_RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")

    fp16 = publish(
        repository,
        fp16_name,
        write_fp16,
        lambda _v: to_pbtxt(onnxruntime_tensorrt_fp16_config(model, fp16_name, batching)),
    )
    if not tensorrt_available():
        return Fp16Published(
            fp16,
            None,
            [
                f"tensorrt not importable here: published {fp16_name} (ONNX FP16 + TensorRT accelerator); "
                f"build the plan with docker/build_plan.sh {repository} {served_name}"
            ],
        )

    def write_plan(folder: Path) -> None:
        built = build_plan(
            fp16_onnx,
            fp32_onnx,
            model,
            batching.max_batch_size,
            outcome.kept_fp32,
            folder / PLAN_FILE,
            repository.parent / f".{repository.name}.{TIMING_CACHE_FILE}",
        )
        write_plan_record(built, folder)
        (folder / FIDELITY_FILE).write_text(json.dumps(record, indent=2) + "\n")

    plan = publish(repository, plan_name, write_plan, lambda _v: plan_config)
    return Fp16Published(fp16, plan, [f"published {fp16_name} (ONNX FP16) and {plan_name} (TensorRT plan)"])
