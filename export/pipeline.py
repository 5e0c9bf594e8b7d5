"""The export pipeline for one zoo model: load → ONNX → verify → publish.

Nothing reaches the repository unless ONNX Runtime's outputs match PyTorch's within
the model's tolerance on real inputs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import onnxruntime
import torch

import prodgen
from prodgen.canary import write_canary
from prodgen.errors import ProdgenError
from prodgen.export.cpu_variants import (
    Variant,
    VariantContext,
    int8_openvino_variant,
    int8_variant,
    openvino_variant,
)
from prodgen.export.fidelity import (
    DEFAULT_INT8_MIN_PSNR_DB,
    DEFAULT_INT8_MIN_SSIM,
    DEFAULT_MIN_PSNR_DB,
    Fp16Outcome,
    fp16_with_fallback,
)
from prodgen.export.fp16_publish import Fp16Published, publish_fp16
from prodgen.export.onnx_export import export_onnx
from prodgen.export.queue_sizing import DEFAULT_LATENCY_BUDGET_S, QueueSizing, size_queue
from prodgen.export.verify import Parity, onnx_session, run_pytorch, verify_onnx
from prodgen.model_repository.config import BatchingOptions, onnxruntime_config, to_pbtxt
from prodgen.model_repository.publish import ONNX_FILE, PublishedVersion, publish
from prodgen.zoo.loading import Checkpoint, serving_module
from prodgen.zoo.samples import verification_cases
from prodgen.zoo.spec import ZooModel

Step = Callable[[str], None]

PROVENANCE_FILE = "prodgen-export.json"


@dataclass(frozen=True)
class ExportRequest:
    model: ZooModel
    repository: Path
    served_name: str
    checkpoint: Checkpoint | None = None
    """One weight file, or one per named part for models with `weight_files` (in that order)."""
    seed: int = 0
    batching: BatchingOptions = BatchingOptions()
    fp16: bool = False
    """Also publish `<name>_fp16` (and `<name>_trt` where TensorRT is importable), fidelity-gated."""
    min_psnr_db: float = DEFAULT_MIN_PSNR_DB
    latency_budget_s: float | None = DEFAULT_LATENCY_BUDGET_S
    """Bound the server's queue to what the model answers within this many seconds (measured
    throughput × budget); None publishes an unbounded queue."""
    int8: bool = False
    """Also quantise to INT8 (QDQ) and publish `<name>_int8` where inside the gate and faster here."""
    int8_min_psnr_db: float = DEFAULT_INT8_MIN_PSNR_DB
    int8_min_ssim: float = DEFAULT_INT8_MIN_SSIM
    openvino: bool = False
    """Also race OpenVINO against ONNX Runtime and publish `<name>_openvino` where it wins."""


@dataclass(frozen=True)
class ExportResult:
    published: PublishedVersion
    parity: Parity
    fp16: Fp16Outcome | None = None
    fp16_published: Fp16Published | None = None
    loading_notes: list[str] = field(default_factory=list)
    """What loading decided beyond the weights (StyleGAN2: where the truncation centre came from)."""
    queue: QueueSizing | None = None
    cpu_variants: list[Variant] = field(default_factory=list)
    """`<name>_int8` and `<name>_openvino` when asked for: published or not, and why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _per_file(checkpoint: Checkpoint | None, describe: Callable[[Path], str]) -> str | list[str] | None:
    """One value for a single weight file, a list for models with several (one per named part)."""
    if checkpoint is None:
        return None
    return describe(checkpoint) if isinstance(checkpoint, Path) else [describe(path) for path in checkpoint]


def _provenance(request: ExportRequest, parity: Parity, loading_notes: list[str]) -> dict[str, object]:
    return {
        "zoo_model": request.model.name,
        "upstream": request.model.upstream,
        "checkpoint": _per_file(request.checkpoint, str),
        "checkpoint_sha256": _per_file(request.checkpoint, _sha256),
        "random_weights_seed": None if request.checkpoint else request.seed,
        "loading_notes": loading_notes,
        "parity_onnxruntime_vs_pytorch": asdict(parity),
        "versions": {
            "prodgen": prodgen.__version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }


def export_model(request: ExportRequest, step: Step = lambda _: None) -> ExportResult:
    model = request.model
    step("loading weights")
    loading_notes: list[str] = []
    graph = serving_module(model, request.checkpoint, request.seed, loading_notes)
    cases = verification_cases(model)
    with tempfile.TemporaryDirectory(prefix="prodgen-export-") as work:
        onnx_path = Path(work) / ONNX_FILE
        step("exporting ONNX")
        export_onnx(graph, model, cases[0], onnx_path)
        step("verifying ONNX Runtime against PyTorch on real inputs")
        parity = verify_onnx(graph, model, onnx_path, cases)
        if not parity.passed:
            raise ProdgenError(
                f"{request.served_name}: ONNX parity check failed: {parity.describe()}; nothing was published"
            )
        batching, queue = request.batching, None
        if request.latency_budget_s is not None:
            step("measuring throughput to size the server's queue")
            queue = size_queue(onnx_path, cases[0], request.batching, request.latency_budget_s)
            batching = queue.batching
        canary_inputs = {name: array[:1] for name, array in cases[0].items()}
        canary_outputs = dict(
            zip(
                [spec.name for spec in model.outputs],
                onnx_session(onnx_path).run([spec.name for spec in model.outputs], canary_inputs),
                strict=True,
            )
        )
        fp16: Fp16Outcome | None = None
        if request.fp16:
            step("converting to FP16 and checking its fidelity")
            reference = [run_pytorch(graph, model, inputs) for inputs in cases]
            fp16 = fp16_with_fallback(
                onnx.load(str(onnx_path)), model, cases, reference, request.min_psnr_db, request.served_name
            )
            onnx.save(fp16.graph.model, str(Path(work) / "model_fp16.onnx"))

        def write_version(folder: Path) -> None:
            shutil.copyfile(onnx_path, folder / ONNX_FILE)
            canary = write_canary(folder, canary_inputs, canary_outputs, model.min_fraction_within_one_level)
            record = {**_provenance(request, parity, loading_notes), "canary": canary}
            (folder / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")

        def config_text(_version: int) -> str:
            return to_pbtxt(onnxruntime_config(model, request.served_name, batching))

        step("publishing")
        published = publish(request.repository, request.served_name, write_version, config_text)
        fp16_published = None
        if fp16 is not None:
            step("publishing FP16")
            fp16_published = publish_fp16(
                model, request.served_name, request.repository, batching, onnx_path,
                Path(work) / "model_fp16.onnx", fp16, _provenance(request, parity, loading_notes),
            )  # fmt: skip
        variants: list[Variant] = []
        if request.int8 or request.openvino:
            context = VariantContext(
                model, request.served_name, request.repository, batching, onnx_path, Path(work), cases,
                [run_pytorch(graph, model, inputs) for inputs in cases], _provenance(request, parity, loading_notes),
            )  # fmt: skip
            int8 = None
            if request.int8:
                step("quantising to INT8, checking its fidelity and racing it against FP32")
                variants.append(int8_variant(context, request.int8_min_psnr_db, request.int8_min_ssim))
                int8 = variants[-1].int8
            if request.openvino:
                step("converting to OpenVINO, checking its fidelity and racing it against ONNX Runtime")
                variants.append(openvino_variant(context, request.min_psnr_db))
                if request.int8:
                    step("running an INT8 graph on OpenVINO, checking its fidelity and racing it")
                    variants.append(
                        int8_openvino_variant(context, int8, request.int8_min_psnr_db, request.int8_min_ssim)
                    )
    return ExportResult(published, parity, fp16, fp16_published, loading_notes, queue, variants)
