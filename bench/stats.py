"""Latency percentiles and the stability rule that decides when a measurement is done.

Percentiles use the nearest-rank definition: the p-th percentile is the smallest
observed latency that at least p % of the samples do not exceed. Every reported figure
is therefore a latency some request really had, and the rule is easy to check by hand.

Stability follows Triton's perf_analyzer: a run is stable when each of the last
`count` measurement windows has a throughput and a latency within ±`tolerance` of the
mean of those windows. perf_analyzer compares average latency; we compare the median
(p50) by default, because on a small shared machine one slow request moves the mean of
a short window far more than it moves what most requests saw.

Verdicts against a threshold ("the server adds ≤ 1.5 ms") are stated only when a bootstrap
confidence interval of the figure lies wholly on one side of the threshold; otherwise the
figure is "within noise" and is printed with its interval. The bootstrap is the percentile
method (Efron): resample the observations with replacement, recompute the statistic, and take
the middle `confidence` share of the recomputed values. Interleaved pairs are resampled as
pairs (their differences), so what both members of a pair shared cancels in every resample.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

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


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
"""Fixed, so the same samples always give the same interval and the same verdict."""

Statistic = Callable[[np.ndarray], np.ndarray]
"""Reduces each row of a (resamples, n) array to one value, e.g. `np.median(rows, axis=1)`."""


def row_medians(rows: np.ndarray) -> np.ndarray:
    return np.asarray(np.median(rows, axis=1))


def row_means(rows: np.ndarray) -> np.ndarray:
    return np.asarray(np.mean(rows, axis=1))


def row_percentile(q: float) -> Statistic:
    """The nearest-rank percentile of each row, as `percentile` defines it."""

    def statistic(rows: np.ndarray) -> np.ndarray:
        return np.asarray(np.percentile(rows, q, axis=1, method="inverted_cdf"))

    return statistic


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval around `estimate` (the statistic of the observed samples)."""

    estimate: float
    low: float
    high: float
    confidence: float = BOOTSTRAP_CONFIDENCE

    def scaled(self, factor: float) -> Interval:
        """The interval of factor × the figure (factor > 0)."""
        return Interval(factor * self.estimate, factor * self.low, factor * self.high, self.confidence)

    def reciprocal(self) -> Interval:
        """The interval of 1 / the figure (a positive one): a latency's interval as a throughput's."""
        return Interval(1 / self.estimate, 1 / self.high, 1 / self.low, self.confidence)

    def text(self, unit: str = "", signed: bool = False, digits: int = 2) -> str:
        """`+3.10 ms (95 % CI +2.80..+3.40 ms)`: the figure never without its interval."""
        form = f"{{:{'+' if signed else ''}.{digits}f}}"
        number = form.format
        return (
            f"{number(self.estimate)}{unit} ({100 * self.confidence:.0f} % CI "
            f"{number(self.low)}..{number(self.high)}{unit})"
        )


def _row(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[np.newaxis]


def _resampled(values: Sequence[float], resamples: int, rng: np.random.Generator) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("a bootstrap needs at least one observation")
    return array[rng.integers(0, array.size, size=(resamples, array.size))]


def _interval(estimate: float, replicates: np.ndarray, confidence: float) -> Interval:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is outside (0, 1)")
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), confidence)


def bootstrap_interval(
    values: Sequence[float],
    statistic: Statistic = row_medians,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Interval of `statistic` over one series (for interleaved pairs: their differences)."""
    rng = np.random.default_rng(seed)
    estimate = float(statistic(_row(values))[0])
    return _interval(estimate, statistic(_resampled(values, resamples, rng)), confidence)


def _two_samples(
    first: Sequence[float],
    second: Sequence[float],
    combine: Callable[[np.ndarray, np.ndarray], np.ndarray],
    statistic: Statistic,
    confidence: float,
    resamples: int,
    seed: int,
) -> Interval:
    rng = np.random.default_rng(seed)

    def figure(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(combine(statistic(a), statistic(b)))

    estimate = float(figure(_row(first), _row(second))[0])
    replicates = figure(_resampled(first, resamples, rng), _resampled(second, resamples, rng))
    return _interval(estimate, replicates, confidence)


def bootstrap_ratio_interval(
    numerator: Sequence[float],
    denominator: Sequence[float],
    statistic: Statistic = row_means,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Interval of statistic(numerator) / statistic(denominator), two series taken apart and
    resampled apart (e.g. eager over ONNX Runtime mean latency: ONNX Runtime's speed-up)."""
    return _two_samples(numerator, denominator, np.divide, statistic, confidence, resamples, seed)


def bootstrap_difference_interval(
    first: Sequence[float],
    second: Sequence[float],
    statistic: Statistic = row_medians,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Interval of statistic(first) − statistic(second) for two series that are not pairs
    (taken at different times: wider than the paired interval, as it should be)."""
    return _two_samples(first, second, np.subtract, statistic, confidence, resamples, seed)


Side = Literal["at most", "at least"]


@dataclass(frozen=True)
class ThresholdVerdict:
    """Whether a figure is on the wanted side of a threshold, by its confidence interval."""

    interval: Interval
    threshold: float
    wanted: Side

    @property
    def met(self) -> bool | None:
        """True or False when the whole interval lies on one side of the threshold; None: within noise."""
        if self.wanted == "at most":
            return (
                True if self.interval.high <= self.threshold else False if self.interval.low > self.threshold else None
            )
        return True if self.interval.low >= self.threshold else False if self.interval.high < self.threshold else None

    @property
    def word(self) -> str:
        return {True: "met", False: "missed", None: "within noise"}[self.met]
