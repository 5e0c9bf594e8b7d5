"""The cells of the result tables, formatted once for the live terminal table and the
Markdown report: a column is a header and the function that reads its figure."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from prodgen.bench.direct import Measurement
from prodgen.bench.served import LoadLevel

Row = TypeVar("Row")


def number(value: float | None, digits: int = 1, scale: float = 1.0, suffix: str = "") -> str:
    """A figure with thousands separators; '–' for a missing or non-finite one."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value * scale:,.{digits}f}{suffix}"


def _memory(m: Measurement) -> str:
    text = f"{number(m.memory.peak_rss_mb, 0)} (+{number(m.memory.increment_mb, 0)})"
    if m.memory.device_peak_mb is not None:
        text += f", GPU {number(m.memory.device_peak_mb, 0)}"
    return text


DIRECT_COLUMNS: dict[str, Callable[[Measurement], str]] = {
    "model": lambda m: m.model,
    "runtime": lambda m: m.runtime,
    "precision": lambda m: m.precision,
    "batch": lambda m: str(m.batch),
    "size": lambda m: m.shape_label,
    "images/s": lambda m: number(m.images_per_s),
    "p50 ms": lambda m: number(m.latency.p50_ms),
    "p90 ms": lambda m: number(m.latency.p90_ms),
    "p95 ms": lambda m: number(m.latency.p95_ms),
    "p99 ms": lambda m: number(m.latency.p99_ms),
    "runs": lambda m: str(m.latency.count),
    "peak RSS MB (+Δ)": _memory,
    "GFLOP/s": lambda m: number(m.achieved_gflops, 0),
    "of ceiling": lambda m: number(m.ceiling_fraction, 0, 100, " %"),
    "within 1 level": lambda m: (
        "reference" if m.agreement_within_one_level is None else number(m.agreement_within_one_level, 2, 100, " %")
    ),
    "other procs CPU": lambda m: number(m.others_cpu_fraction, 0, 100, " %"),
}


def _in_and_out(level: LoadLevel) -> str:
    split = level.split
    if split is None or split.compute_input_ms is None:
        return "–"
    return number(split.compute_input_ms + (split.compute_output_ms or 0.0), 2)


SERVED_COLUMNS: dict[str, Callable[[LoadLevel], str]] = {
    "model": lambda lv: lv.model,
    "load": lambda lv: lv.label,
    "stable": lambda lv: "yes" if lv.stable else "no",
    "completed+errors=sent": lambda lv: f"{lv.completed}+{lv.errors}={lv.sent}",
    "req/s": lambda lv: number(lv.throughput_rps),
    "images/s": lambda lv: number(lv.images_per_s),
    "p50 ms": lambda lv: number(lv.latency.p50_ms if lv.latency else None, 2),
    "p90 ms": lambda lv: number(lv.latency.p90_ms if lv.latency else None, 2),
    "p95 ms": lambda lv: number(lv.latency.p95_ms if lv.latency else None, 2),
    "p99 ms": lambda lv: number(lv.latency.p99_ms if lv.latency else None, 2),
    "client mean": lambda lv: number(lv.split.client_ms if lv.split else None, 2),
    "server": lambda lv: number(lv.split.server_ms if lv.split else None, 2),
    "queue": lambda lv: number(lv.split.queue_ms if lv.split else None, 2),
    "infer": lambda lv: number(lv.split.compute_infer_ms if lv.split else None, 2),
    "in+out": _in_and_out,
    "client+network": lambda lv: number(lv.split.client_and_network_ms if lv.split else None, 2),
    "avg batch": lambda lv: number(lv.server.average_batch if lv.server else None, 2),
}

REPORT_DIRECT = tuple(name for name in DIRECT_COLUMNS if name != "model")
REPORT_SERVED = tuple(name for name in SERVED_COLUMNS if name != "model")
CONSOLE_DIRECT = (
    "model",
    "runtime",
    "precision",
    "batch",
    "size",
    "images/s",
    "p50 ms",
    "p99 ms",
    "peak RSS MB (+Δ)",
    "GFLOP/s",
    "of ceiling",
    "within 1 level",
    "other procs CPU",
)
CONSOLE_SERVED = (
    "model",
    "load",
    "stable",
    "completed+errors=sent",
    "images/s",
    "p50 ms",
    "p99 ms",
    "server",
    "queue",
    "infer",
    "client+network",
    "avg batch",
)


def cells(columns: dict[str, Callable[[Row], str]], names: Sequence[str], row: Row) -> list[str]:
    return [columns[name](row) for name in names]
