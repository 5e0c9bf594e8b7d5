"""Latency percentiles and the stability rule that decides when a measurement is done.

Percentiles use the nearest-rank definition: the p-th percentile is the smallest
observed latency that at least p % of the samples do not exceed. Every reported figure
is therefore a latency some request really had, and the rule is easy to check by hand.

Stability follows Triton's perf_analyzer: a run is stable when each of the last
`count` measurement windows has a throughput and a latency within ±`tolerance` of the
mean of those windows. perf_analyzer compares average latency; we compare the median
(p50) by default, because on a small shared machine one slow request moves the mean of
a short window far more than it moves what most requests saw.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

PERCENTILES = (50, 90, 95, 99)
LatencyMetric = Literal["p50", "mean"]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100]; raises on an empty series."""
    if not values:
        raise ValueError("percentile of an empty series")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is outside (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True)
class LatencySummary:
    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float


def summarize(latencies_ms: Sequence[float]) -> LatencySummary:
    if not latencies_ms:
        raise ValueError("no latencies to summarize")
    return LatencySummary(
        count=len(latencies_ms),
        mean_ms=statistics.fmean(latencies_ms),
        std_ms=statistics.pstdev(latencies_ms),
        min_ms=min(latencies_ms),
        max_ms=max(latencies_ms),
        p50_ms=percentile(latencies_ms, 50),
        p90_ms=percentile(latencies_ms, 90),
        p95_ms=percentile(latencies_ms, 95),
        p99_ms=percentile(latencies_ms, 99),
    )


@dataclass(frozen=True)
class WindowFigures:
    """What one measurement window saw: its throughput and its latency figure."""

    throughput: float
    latency_ms: float


def window_figures(
    completed_latencies_ms: Sequence[float], duration_s: float, metric: LatencyMetric = "p50"
) -> WindowFigures:
    """Throughput (completions per second) and latency of one window's completed requests."""
    if duration_s <= 0:
        raise ValueError("a window must last longer than 0 s")
    if not completed_latencies_ms:
        return WindowFigures(0.0, math.inf)
    latency = percentile(completed_latencies_ms, 50) if metric == "p50" else statistics.fmean(completed_latencies_ms)
    return WindowFigures(len(completed_latencies_ms) / duration_s, latency)


def _within(values: Sequence[float], tolerance: float) -> bool:
    mean = statistics.fmean(values)
    if not math.isfinite(mean) or mean <= 0:
        return False
    return all(abs(value - mean) <= tolerance * mean for value in values)


def is_stable(windows: Sequence[WindowFigures], tolerance: float = 0.10, count: int = 3) -> bool:
    """True when the last `count` windows agree within ±tolerance on throughput and latency."""
    if count < 1:
        raise ValueError("stability needs at least one window")
    if len(windows) < count:
        return False
    recent = windows[-count:]
    return _within([w.throughput for w in recent], tolerance) and _within([w.latency_ms for w in recent], tolerance)


def spread(windows: Sequence[WindowFigures], count: int = 3) -> tuple[float, float]:
    """Largest relative deviation from the mean of the last `count` windows (throughput, latency)."""
    recent = windows[-count:]

    def deviation(values: list[float]) -> float:
        mean = statistics.fmean(values)
        if not math.isfinite(mean) or mean <= 0:
            return math.inf
        return max(abs(v - mean) for v in values) / mean

    return deviation([w.throughput for w in recent]), deviation([w.latency_ms for w in recent])
