"""Four acceptance targets for CPU and GPU runs, judged on what a run measured when asked
(`prodgen-bench … --targets`); reported, never asserted, and off by default because they are
the project's goals for its reference machines, not a user's.

1. ONNX Runtime ≥ 1.5× PyTorch eager throughput at batch 4, per model.
2. The served model at concurrency 8 reaches ≥ 90 % of direct ONNX Runtime throughput.
3. The embedded server adds ≤ 1.5 ms p50 per request over a direct ONNX Runtime call
   (set for a 256×256 image; other sizes are reported as measured).
4. Conv-heavy models reach ≥ 70 % of the measured GEMM ceiling on CPU (best FP32 runtime).

Target 1 compares runtimes on the same device only: on a GPU machine whose ONNX Runtime
is the CPU build, it is "not measured" rather than a comparison of CPU with GPU.

A missed target states by how much; why, and what would close it, is for the reader of
the report, since it depends on the machine.

Each figure comes with a bootstrap confidence interval (`prodgen.bench.stats`): over the
interleaved pairs for the server overhead, over each runtime's timed runs for the ratios, and
over the served level's request latencies for throughput at load (at a fixed concurrency a
closed loop's throughput is the concurrency over the mean latency). A target is "met" or
"missed" only when the whole interval lies on one side of it, otherwise "within noise".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prodgen.bench.direct import DirectResult
from prodgen.bench.reference import DirectReference
from prodgen.bench.served import ServedResult
from prodgen.bench.stats import (
    Interval,
    ThresholdVerdict,
    bootstrap_difference_interval,
    bootstrap_interval,
    bootstrap_ratio_interval,
    row_means,
)

ORT_OVER_EAGER = 1.5
SERVED_OVER_DIRECT = 0.90
SERVER_OVERHEAD_MS = 1.5
CEILING_FRACTION = 0.70
CONV_HEAVY_DENSE_FRACTION = 0.90
SERVED_CONCURRENCY = 8


@dataclass(frozen=True)
class TargetCheck:
    target: str
    model: str
    measured: float | None
    required: str
    met: bool | None
    detail: str

    interval: Interval | None = None
    """The measured figure's confidence interval; `met` is None (within noise) when it straddles the threshold."""

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "not measured" if self.interval is None else "within noise"
        return "met" if self.met else "missed"


def _ort_over_eager(result: DirectResult) -> list[TargetCheck]:
    checks = []
    by_key = {(m.runtime, m.batch, m.height): m for m in result.measurements}
    shapes = sorted({m.height for m in result.measurements}, key=lambda h: h or 0)
    for height in shapes:
        ort, eager = by_key.get(("onnxruntime", 4, height)), by_key.get(("torch-eager", 4, height))
        where = f" at {height}×{height}" if height else ""
        if ort is None or eager is None or ort.device != eager.device:
            needs = f"needs onnxruntime and torch-eager at batch 4{where} on the same device"
            if ort is not None and eager is not None:
                needs += f" (onnxruntime ran on {ort.device}, torch-eager on {eager.device})"
            checks.append(TargetCheck("ort≥1.5×eager@b4", result.model, None, f"≥ {ORT_OVER_EAGER}×", None, needs))
            continue
        ratio = ort.images_per_s / eager.images_per_s
        verdict = ThresholdVerdict(
            bootstrap_ratio_interval(eager.latencies_ms, ort.latencies_ms), ORT_OVER_EAGER, "at least"
        )
        gap = (
            ""
            if ratio >= ORT_OVER_EAGER
            else f"; short by {ORT_OVER_EAGER - ratio:.2f}× ({100 * (1 - ratio / ORT_OVER_EAGER):.0f} %)"
        )
        if (
            ratio < ORT_OVER_EAGER
            and eager.ceiling_fraction is not None
            and ORT_OVER_EAGER * eager.ceiling_fraction > 1
        ):
            gap += (
                f"; out of reach here: eager already runs at {100 * eager.ceiling_fraction:.0f} % of the GEMM ceiling, "
                f"so 1.5× eager would need {100 * ORT_OVER_EAGER * eager.ceiling_fraction:.0f} %"
            )
        checks.append(
            TargetCheck(
                "ort≥1.5×eager@b4",
                result.model,
                ratio,
                f"≥ {ORT_OVER_EAGER}×",
                verdict.met,
                f"{ort.images_per_s:.1f} vs {eager.images_per_s:.1f} images/s{where}, "
                f"ratio {verdict.interval.text('×')}{gap}",
                verdict.interval,
            )
        )
    return checks


def _ceiling(result: DirectResult) -> list[TargetCheck]:
    conv_heavy = [label for label, count in result.flops.items() if count.dense_fraction >= CONV_HEAVY_DENSE_FRACTION]
    if not conv_heavy:
        return []
    fp32 = [
        m for m in result.measurements if m.device == "cpu" and m.precision == "fp32" and m.ceiling_fraction is not None
    ]
    if not fp32:
        return [
            TargetCheck("≥70% of GEMM ceiling", result.model, None, "≥ 70 %", None, "no FP32 measurement on the CPU")
        ]
    best = max(fp32, key=lambda m: m.ceiling_fraction or 0.0)
    fraction = best.ceiling_fraction or 0.0
    # the fraction is inversely proportional to the mean latency; the ceiling is taken as measured
    mean_latency = bootstrap_interval(best.latencies_ms, row_means)
    interval = mean_latency.reciprocal().scaled(fraction * mean_latency.estimate)
    verdict = ThresholdVerdict(interval, CEILING_FRACTION, "at least")
    gap = "" if fraction >= CEILING_FRACTION else f"; short by {100 * (CEILING_FRACTION - fraction):.1f} points"
    detail = (
        f"best: {best.runtime} batch {best.batch} {best.shape_label}, {best.achieved_gflops:.0f} of "
        f"{best.ceiling_gflops:.0f} GFLOP/s ({best.ceiling}), fraction {interval.text(digits=3)}{gap}"
    )
    return [TargetCheck("≥70% of GEMM ceiling", result.model, fraction, "≥ 70 %", verdict.met, detail, interval)]


def _served(result: ServedResult) -> list[TargetCheck]:
    checks = []
    level = result.level(SERVED_CONCURRENCY)
    reference = result.reference
    if level is None or reference is None:
        missing = "no concurrency-8 level" if level is None else "no direct reference (give --repository or --onnx)"
        checks.append(TargetCheck("served c8 ≥90% of direct", result.model, None, "≥ 90 %", None, missing))
    else:
        fraction = level.images_per_s / reference.best_images_per_s
        best = max(reference.points, key=lambda p: p.images_per_s)
        interval = _served_fraction_interval(fraction, level.measured_latencies_ms, best.latencies_ms)
        met = ThresholdVerdict(interval, SERVED_OVER_DIRECT, "at least").met if interval is not None else None
        gap = "" if fraction >= SERVED_OVER_DIRECT else f"; short by {100 * (SERVED_OVER_DIRECT - fraction):.1f} points"
        within = f", fraction {interval.text(digits=3)}" if interval is not None else ""
        checks.append(
            TargetCheck(
                "served c8 ≥90% of direct",
                result.model,
                fraction,
                "≥ 90 %",
                met,
                f"{level.images_per_s:.1f} served vs {reference.best_images_per_s:.1f} direct images/s "
                f"(direct batch {best.batch}){within}{gap}",
                interval,
            )
        )
    checks.append(_server_overhead(result, reference))
    return checks


def _served_fraction_interval(fraction: float, served_ms: list[float], direct_ms: list[float]) -> Interval | None:
    """Served over direct throughput varies as direct mean latency over served mean latency (a
    closed loop at fixed concurrency); the interval of that ratio, scaled to the measured fraction."""
    if not served_ms or not direct_ms:
        return None
    ratio = bootstrap_ratio_interval(direct_ms, served_ms)
    return ratio.scaled(fraction / ratio.estimate)


def _threshold_words(verdict: ThresholdVerdict) -> str:
    """ "adds ≤ 1.5 ms" only when the interval says so; the interval always beside the figure."""
    limit = f"{verdict.threshold:g} ms"
    said = {True: f"adds ≤ {limit}", False: f"adds more than {limit}", None: f"within noise of {limit}"}[verdict.met]
    return f"{said}: p50 {verdict.interval.text(' ms', signed=True)}"


def _server_overhead(result: ServedResult, reference: DirectReference | None) -> TargetCheck:
    """From interleaved pairs when they were measured; otherwise the concurrency-1 level
    against the direct reference, which were taken at different times and say so."""
    name = "server adds ≤1.5 ms p50"
    size = f"{result.image_side}×{result.image_side}" if result.image_side else "no image input"
    overhead = result.overhead
    if overhead is not None:
        added = overhead.added_p50_ms
        verdict = overhead.adds_at_most(SERVER_OVERHEAD_MS)
        parts = []
        if overhead.empty_call is not None:
            parts.append(f"an empty gRPC call to the server {overhead.empty_call.p50_ms:.2f} ms p50")
        if overhead.client_and_network_ms is not None:
            parts.append(f"client+network {overhead.client_and_network_ms:.2f} ms")
        if overhead.server is not None and overhead.server.compute_infer_ms is not None:
            # two means side by side, not their difference: a difference is printed only with its interval
            parts.append(
                f"Triton compute_infer {overhead.server.compute_infer_ms:.2f} ms vs direct {overhead.direct.mean_ms:.2f} ms (means)"
            )
        split = f"; {', '.join(parts)}" if parts else ""
        detail = (
            f"{_threshold_words(verdict)}, median of {overhead.pairs} interleaved served/direct pairs, {size}: "
            f"served p50 {overhead.served.p50_ms:.2f} ms, direct p50 {overhead.direct.p50_ms:.2f} ms{split}"
        )
        return TargetCheck(name, result.model, added, "≤ 1.5 ms", verdict.met, detail, verdict.interval)
    single = result.level(1)
    point = reference.at(result.settings.request_batch) if reference is not None else None
    if single is None or single.latency is None or point is None:
        return TargetCheck(name, result.model, None, "≤ 1.5 ms", None, "needs concurrency 1 and a direct reference")
    added = single.latency.p50_ms - point.latency.p50_ms
    verdict = ThresholdVerdict(
        bootstrap_difference_interval(single.measured_latencies_ms, point.latencies_ms), SERVER_OVERHEAD_MS, "at most"
    )
    detail = (
        f"{_threshold_words(verdict)}, p50 {single.latency.p50_ms:.2f} ms served (c=1) vs {point.latency.p50_ms:.2f} ms "
        f"direct, {size}, measured apart (no pairs)"
    )
    return TargetCheck(name, result.model, added, "≤ 1.5 ms", verdict.met, detail, verdict.interval)


def evaluate(direct: Sequence[DirectResult], served: Sequence[ServedResult]) -> list[TargetCheck]:
    checks: list[TargetCheck] = []
    for result in direct:
        checks += _ort_over_eager(result) + _ceiling(result)
    for served_result in served:
        checks += _served(served_result)
    return checks
