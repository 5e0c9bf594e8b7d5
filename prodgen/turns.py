"""Timing several callables in turns: one run of each, again and again.

Taking turns spreads a busy moment of the machine over all of them alike, so their ratios
hold even where absolute figures do not. The benchmarks time runtimes this way, and export
races a CPU variant against FP32 ONNX Runtime this way before publishing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TurnLimits:
    """Turns go on until every series has `min_runs` runs and `min_seconds` of timed work,
    or one reaches `max_runs` or `max_seconds`."""

    min_runs: int = 5
    min_seconds: float = 3.0
    max_runs: int = 500
    max_seconds: float = 30.0


def time_turns(
    runs: Sequence[Callable[[], object]],
    limits: TurnLimits,
    progress: Callable[[float, float], None] | None = None,
) -> list[list[float]]:
    """Latencies (ms) of each of `runs`, timed in turns; `progress(done, total)` after each turn."""
    series: list[list[float]] = [[] for _ in runs]
    while True:
        for run, samples in zip(runs, series, strict=True):
            begin = time.perf_counter()
            run()
            samples.append((time.perf_counter() - begin) * 1000)
        seconds = [sum(samples) / 1000 for samples in series]
        turns = len(series[0])
        if progress is not None:
            time_part = min(seconds) / limits.min_seconds if limits.min_seconds > 0 else 1.0
            progress(min(turns / limits.min_runs, time_part, 1.0), 1.0)
        if turns >= limits.max_runs or max(seconds) >= limits.max_seconds:
            return series
        if turns >= limits.min_runs and min(seconds) >= limits.min_seconds:
            return series
