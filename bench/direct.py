"""Direct mode: one model through every runtime available here, side by side in one run.

For each input shape (batch × image size) every runtime is prepared and warmed up, then
they take turns, one timed run each, until each has both a minimum count and a minimum
time of runs (bounded by a maximum of each): a noisy machine disturbs them alike.
Each runtime's first output is compared with that of the first runtime of the shape
(PyTorch eager whenever it is run), so a fast wrong answer is visible next to its speed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from prodgen.bench.ceiling import Ceiling, best_ceiling
from prodgen.bench.events import Observer, Silent
from prodgen.bench.flops import FlopCount, count_flops
from prodgen.bench.machine import OtherProcessesLoad
from prodgen.bench.memory import MemoryPeak, PeakMemory
from prodgen.bench.onnxruntime_runtime import OnnxRuntime
from prodgen.bench.runtime import Inputs, Outputs, Prepared, Runtime, RuntimeUnavailable, Workload, physical_cores
from prodgen.bench.stats import LatencySummary, summarize
from prodgen.bench.tensorrt_runtime import TensorRT
from prodgen.bench.torch_runtimes import TorchBest, TorchBf16, TorchEager
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import compare_outputs
from prodgen.model_repository.publish import ONNX_FILE, versions
from prodgen.turns import TurnLimits, time_turns
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import sample_inputs
from prodgen.zoo.spec import ZooModel

RUNTIMES: dict[str, Callable[[DirectSettings], Runtime]] = {
    "torch-eager": lambda s: TorchEager(),
    "torch-best": lambda s: TorchBest(compile=s.compile),
    "onnxruntime": lambda s: OnnxRuntime(),
    "tensorrt": lambda s: TensorRT(),
    "torch-bf16": lambda s: TorchBf16(),
}
DEFAULT_RUNTIMES = ("torch-eager", "torch-best", "onnxruntime", "tensorrt")
REFERENCE_RUNTIME = "torch-eager"


@dataclass(frozen=True)
class DirectSettings:
    batches: tuple[int, ...] = (1, 4)
    sizes: tuple[int, ...] = ()
    """Image sides to run; empty means the model's tuned size. Ignored for models without image inputs."""
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    warmup: int = 2
    min_runs: int = 5
    min_seconds: float = 3.0
    max_runs: int = 500
    max_seconds: float = 30.0
    threads: int = 0
    """Threads for PyTorch and ONNX Runtime; 0 means the machine's physical cores."""
    compile: bool = True
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [name for name in self.runtimes if name not in RUNTIMES]
        if unknown:
            raise ProdgenError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
        if not self.runtimes or not self.batches:
            raise ProdgenError("give at least one runtime and one batch size")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ProdgenError(f"--device must be auto, cpu or cuda, got '{self.device}'")
        object.__setattr__(self, "max_seconds", max(self.max_seconds, self.min_seconds))  # at least the minimum

    @property
    def turn_limits(self) -> TurnLimits:
        return TurnLimits(self.min_runs, self.min_seconds, self.max_runs, self.max_seconds)

    def check(self, model: ZooModel) -> None:
        """Fail fast, before anything is measured, on sizes the model cannot take."""
        _shapes(model, self)

    def resolved_threads(self) -> int:
        return self.threads or physical_cores()

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ProdgenError("--device cuda given, but PyTorch sees no CUDA GPU here")
        return self.device


@dataclass
class Measurement:
    model: str
    runtime: str
    precision: str
    device: str
    batch: int
    height: int | None
    width: int | None
    settings: dict[str, str]
    setup_s: float
    latency: LatencySummary
    images_per_s: float
    memory: MemoryPeak
    dense_gflop_per_image: float
    achieved_gflops: float
    agreement_within_one_level: float | None
    agreement_max_abs_diff: int | None
    others_cpu_fraction: float | None
    """Share of all CPUs' time other processes used during the timed runs (contention)."""
    latencies_ms: list[float] = field(repr=False)
    ceiling: str | None = None
    ceiling_gflops: float | None = None
    ceiling_fraction: float | None = None

    @property
    def shape_label(self) -> str:
        return f"{self.height}×{self.width}" if self.height else "native"


@dataclass(frozen=True)
class Skipped:
    runtime: str
    reason: str


@dataclass
class DirectResult:
    model: str
    task: str
    onnx: str
    onnx_source: str
    weights: str
    device: str
    threads: int
    settings: DirectSettings
    flops: dict[str, FlopCount]
    measurements: list[Measurement]
    skipped: list[Skipped]

    @property
    def reference_runtime(self) -> str | None:
        return self.measurements[0].runtime if self.measurements else None


def latest_repository_onnx(repository: Path, name: str) -> Path:
    found = versions(repository / name)
    if not found:
        raise ProdgenError(f"{repository} has no versions of model '{name}'")
    path = repository / name / str(found[-1]) / ONNX_FILE
    if not path.is_file():
        raise ProdgenError(f"{path} does not exist (a TensorRT-only version?); give --onnx")
    return path


def _shapes(model: ZooModel, settings: DirectSettings) -> list[tuple[int | None, int | None]]:
    if not model.image_inputs or model.bounds is None:
        return [(None, None)]
    sides = settings.sizes or (model.bounds.opt_side,)
    for side in sides:
        model.bounds.check(f"--size {side}", side, side)
    return [(side, side) for side in sides]


def _agreement(reference: Outputs | None, outputs: Outputs) -> tuple[float | None, int | None]:
    if reference is None or any(r.dtype != np.uint8 for r in reference):
        return None, None
    parity = compare_outputs(reference, outputs, required_fraction=0.0)
    return parity.fraction_within_one_level, parity.max_abs_diff


def run_direct(
    model: ZooModel,
    settings: DirectSettings,
    ceilings: Sequence[Ceiling],
    checkpoint: Path | None = None,
    onnx_path: Path | None = None,
    observer: Observer | None = None,
) -> DirectResult:
    """Benchmark `model` in every runtime of `settings`; builds its ONNX unless `onnx_path` is given."""
    observer = observer or Silent()
    settings.check(model)
    device = settings.resolved_device()
    threads = settings.resolved_threads()
    torch.set_num_threads(threads)
    shapes = _shapes(model, settings)
    observer.phase(f"{model.name}: loading weights")
    module = serving_module(model, checkpoint, settings.seed)
    weights = str(checkpoint) if checkpoint else f"seeded random (seed {settings.seed})"
    with tempfile.TemporaryDirectory(prefix="prodgen-bench-") as work:
        if onnx_path is None:
            observer.phase(f"{model.name}: exporting ONNX")
            onnx_path, source = Path(work) / ONNX_FILE, "exported in this run"
            export_onnx(module, model, sample_inputs(model, 1, seed=settings.seed), onnx_path)
        else:
            source = str(onnx_path)
        workload = Workload(model, module, onnx_path, device, threads)
        flops: dict[str, FlopCount] = {}
        for height, width in shapes:
            observer.phase(f"{model.name}: counting FLOPs at {height or 'native'}×{width or ''}".rstrip("×"))
            sample = sample_inputs(model, 1, height, width, seed=settings.seed)
            flops[_label(height, width)] = count_flops(onnx_path, {k: v.shape for k, v in sample.items()}, feed=sample)
        runtimes, skipped = _open_runtimes(settings, workload, observer)
        try:
            measurements = _measure_all(model, settings, workload, runtimes, shapes, flops, ceilings, observer, skipped)
        finally:
            for runtime in runtimes:
                runtime.close()
    return DirectResult(
        model=model.name,
        task=model.task,
        onnx=str(onnx_path) if source != "exported in this run" else "model.onnx (temporary)",
        onnx_source=source,
        weights=weights,
        device=device,
        threads=threads,
        settings=settings,
        flops=flops,
        measurements=measurements,
        skipped=skipped,
    )


def _label(height: int | None, width: int | None) -> str:
    return f"{height}x{width}" if height else "native"


def _open_runtimes(
    settings: DirectSettings, workload: Workload, observer: Observer
) -> tuple[list[Runtime], list[Skipped]]:
    opened: list[Runtime] = []
    skipped: list[Skipped] = []
    ordered = sorted(settings.runtimes, key=lambda name: name != REFERENCE_RUNTIME)  # the reference runs first
    for name in ordered:
        runtime = RUNTIMES[name](settings)
        observer.phase(f"{workload.model.name}: opening {name}")
        try:
            runtime.open(workload)
        except RuntimeUnavailable as reason:
            skipped.append(Skipped(name, str(reason)))
            observer.note(f"{name} skipped: {reason}")
            continue
        opened.append(runtime)
    return opened, skipped


def _measure_all(
    model: ZooModel,
    settings: DirectSettings,
    workload: Workload,
    runtimes: list[Runtime],
    shapes: list[tuple[int | None, int | None]],
    flops: dict[str, FlopCount],
    ceilings: Sequence[Ceiling],
    observer: Observer,
    skipped: list[Skipped],
) -> list[Measurement]:
    measurements: list[Measurement] = []
    for height, width in shapes:
        for batch in settings.batches:
            shape = _Shape(batch, height, width, flops[_label(height, width)])
            found = _measure_shape(model, settings, workload, runtimes, shape, ceilings, observer, skipped)
            for measurement in found:
                observer.result(measurement)
            measurements += found
    return measurements


@dataclass(frozen=True)
class _Shape:
    batch: int
    height: int | None
    width: int | None
    flops: FlopCount

    @property
    def label(self) -> str:
        return f"batch {self.batch} · {_label(self.height, self.width)}"


@dataclass
class _Ready:
    runtime: Runtime
    prepared: Prepared
    outputs: Outputs
    setup_s: float
    memory: MemoryPeak


def _prepare(runtime: Runtime, inputs: Inputs, settings: DirectSettings, cuda: bool) -> _Ready:
    """Prepare one runtime for a shape and warm it up; the peak memory of that is its figure."""
    with PeakMemory(cuda=cuda) as peak:
        start = time.perf_counter()
        prepared = runtime.prepare(inputs)
        outputs = prepared.run()
        setup_s = time.perf_counter() - start
        for _ in range(settings.warmup):
            prepared.run()
    return _Ready(runtime, prepared, outputs, setup_s, peak.result)


def _measure_shape(
    model: ZooModel,
    settings: DirectSettings,
    workload: Workload,
    runtimes: list[Runtime],
    shape: _Shape,
    ceilings: Sequence[Ceiling],
    observer: Observer,
    skipped: list[Skipped],
) -> list[Measurement]:
    """Measure every runtime at one shape; one that fails there is listed in `skipped` with
    its error, and the others are measured."""
    inputs = sample_inputs(model, shape.batch, shape.height, shape.width, seed=settings.seed)
    ready: list[_Ready] = []
    for runtime in runtimes:
        observer.phase(f"{model.name} · {shape.label} · preparing {runtime.name}")
        try:
            ready.append(_prepare(runtime, inputs, settings, cuda=workload.device == "cuda"))
        except Exception as error:  # noqa: BLE001 - one runtime failing on one model must not end a zoo run
            message = (
                f"failed at {shape.label}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            )
            skipped.append(Skipped(runtime.name, message))
            observer.note(f"{model.name} {runtime.name} {message}")
    if not ready:
        return []
    observer.phase(f"{model.name} · {shape.label} · {', '.join(r.runtime.name for r in ready)} in turns")
    with OtherProcessesLoad() as others:
        series = time_turns([r.prepared.run for r in ready], settings.turn_limits, observer.progress)
    reference = ready[0].outputs if ready else None
    measurements = []
    for index, (item, latencies) in enumerate(zip(ready, series, strict=True)):
        summary = summarize(latencies)
        images_per_s = shape.batch / (summary.mean_ms / 1000)
        dense_per_image = shape.flops.dense / 1e9
        within, max_diff = _agreement(reference, item.outputs) if index > 0 else (None, None)
        measurements.append(
            Measurement(
                model=model.name,
                runtime=item.runtime.name,
                precision=item.prepared.precision,
                device=item.prepared.device or workload.device,
                batch=shape.batch,
                height=shape.height,
                width=shape.width,
                settings=item.prepared.settings,
                setup_s=item.setup_s,
                latency=summary,
                images_per_s=images_per_s,
                memory=item.memory,
                dense_gflop_per_image=dense_per_image,
                achieved_gflops=dense_per_image * images_per_s,
                agreement_within_one_level=within,
                agreement_max_abs_diff=max_diff,
                others_cpu_fraction=others.fraction,
                latencies_ms=latencies,
            )
        )
    apply_ceilings(measurements, ceilings)
    return measurements


def apply_ceilings(measurements: Sequence[Measurement], ceilings: Sequence[Ceiling]) -> None:
    """Set each measurement's achieved fraction of the best ceiling of the run for its device
    and precision (called again once the end-of-run ceiling is known)."""
    for measurement in measurements:
        ceiling = best_ceiling(ceilings, measurement.device, measurement.precision)
        if ceiling is not None:
            measurement.ceiling = ceiling.label
            measurement.ceiling_gflops = ceiling.best_gflops
            measurement.ceiling_fraction = measurement.achieved_gflops / ceiling.best_gflops
