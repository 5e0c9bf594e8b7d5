"""The zoo baseline: every zoo model in direct mode, then one model served by the embedded
Triton server, in one run and one report (`prodgen-bench zoo`).

Sizes are chosen so that the whole run stays within about ten minutes on two CPU cores:
each model runs at its tuned side unless one batch-4 call would then take seconds there,
in which case a smaller side is used (`BASELINE_SIDES`); the report lists the sizes.
torch.compile is off by default here: TorchInductor spends about 35 s per shape on two
cores, longer than all other measurements of a model together (`prodgen-bench direct`
includes it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from prodgen import zoo
from prodgen.bench.direct import DirectSettings, latest_repository_onnx, run_direct
from prodgen.bench.events import Observer
from prodgen.bench.reference import measure_reference
from prodgen.bench.report import BenchReport
from prodgen.bench.served import ServedResult, ServedSettings, run_served
from prodgen.zoo.spec import ZooModel

BASELINE_SIDES: dict[str, int] = {
    "adain": 128,  # 95 dense GFLOP per image at its tuned 256², 24 at 128²
    "cyclegan": 128,  # 99 dense GFLOP per image at its tuned 256², 25 at 128²
    "realesr-animevideov3": 128,  # 81 at 256², 20 at 128²
    "realesr-general-x4v3": 64,  # 159 at 256², 10 at 64²
    "realesrgan-x2": 48,  # 147 at its tuned 128², 21 at 48²
    "realesrgan-x4": 32,  # 588 at its tuned 128², 37 at 32²
}
"""Sides below the tuned one for the models that are heavy on a small CPU."""

SERVED_MODEL = "fast-neural-style"
"""Served in the baseline at its tuned 256×256: the size the serving targets (bench/targets.py) are set for."""

BASELINE_DIRECT = DirectSettings(batches=(1, 4), warmup=0, min_runs=3, min_seconds=1.0, max_seconds=10.0, compile=False)
"""Short measurements; no warm-up beyond each runtime's first (untimed) run for the shape."""
BASELINE_SERVED = ServedSettings(
    concurrency=(1, 2, 4, 8),
    warmup_s=1.0,
    window_s=3.0,
    min_window_requests=8,
    max_window_s=15.0,
    max_windows=6,
    timeout_s=120.0,
)


def baseline_side(model: ZooModel) -> int | None:
    """The side a model runs at in the baseline (None for models without image inputs)."""
    if model.bounds is None or not model.image_inputs:
        return None
    return BASELINE_SIDES.get(model.name, model.bounds.opt_side)


def run_zoo_direct(names: Sequence[str], settings: DirectSettings, report: BenchReport, observer: Observer) -> None:
    for name in names:
        model = zoo.get(name)
        side = baseline_side(model)
        model_settings = replace(settings, sizes=(side,) if side else ())
        report.direct.append(run_direct(model, model_settings, report.ceilings, observer=observer))


def serve_and_measure(
    names: Sequence[str],
    settings: ServedSettings,
    report: BenchReport,
    observer: Observer,
    reference_settings: DirectSettings | None = None,
) -> None:
    """Export `names` into a temporary repository (verified, max batch 8), serve it on the
    embedded server, and measure each model with a direct ONNX Runtime reference."""
    from prodgen.export.pipeline import ExportRequest, export_model
    from prodgen.model_repository.config import BatchingOptions
    from prodgen.serve.server import EmbeddedServer, ServerOptions, free_port

    with tempfile.TemporaryDirectory(prefix="prodgen-bench-serve-") as work:
        repository = Path(work) / "models"
        for name in names:
            observer.phase(f"{name}: exporting, verifying and publishing for the server")
            export_model(ExportRequest(zoo.get(name), repository, name, batching=BatchingOptions(max_batch_size=8)))
        options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
        observer.phase("starting the embedded Triton server")
        with EmbeddedServer(options):
            for name in names:
                onnx_path = latest_repository_onnx(repository, name)
                report.served.append(
                    served_with_reference(options.grpc_url, name, settings, onnx_path, observer, reference_settings)
                )


def served_with_reference(
    url: str,
    model: str,
    settings: ServedSettings,
    onnx_path: Path | None,
    observer: Observer,
    reference_settings: DirectSettings | None = None,
) -> ServedResult:
    """The served levels, and direct ONNX Runtime on the same ONNX and payloads when it is at hand."""
    from prodgen.bench.load import Endpoint
    from prodgen.bench.overhead import PairSettings, measure_paired_overhead
    from prodgen.bench.payloads import image_side, request_payloads
    from prodgen.client.api import ProdgenClient

    if onnx_path is None:
        return run_served(url, model, settings, observer)
    with ProdgenClient(url) as client:
        served_model = client.model(model)
    side = image_side(served_model, settings.size)
    reference = measure_reference(onnx_path, served_model, settings.request_batch, side, reference_settings, observer)
    result = run_served(url, model, settings, observer)
    result.reference = reference
    if settings.overhead_pairs > 0:
        observer.phase(f"{model} · served and direct in interleaved pairs")
        endpoint = Endpoint(url, model, served_model.inputs, served_model.outputs, settings.timeout_s)
        payload = request_payloads(served_model, settings.request_batch, side, variants=1)[0]
        pairs = PairSettings(
            min_pairs=settings.overhead_pairs, min_seconds=settings.overhead_seconds, threads=reference.threads
        )
        result.overhead = measure_paired_overhead(endpoint, onnx_path, payload, pairs, observer)
    return result
