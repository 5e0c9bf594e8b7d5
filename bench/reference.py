"""Direct ONNX Runtime on the served model's own ONNX and payloads: the yardstick that says
what serving costs, measured in the same run as the served levels."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from prodgen.bench.direct import DirectSettings
from prodgen.bench.events import Observer, Silent
from prodgen.bench.payloads import request_payloads
from prodgen.bench.runtime import physical_cores
from prodgen.bench.stats import LatencySummary, summarize
from prodgen.onnx_sessions import cpu_session
from prodgen.turns import time_turns

if TYPE_CHECKING:
    from prodgen.client.api import ServedModel


@dataclass
class ReferencePoint:
    batch: int
    images_per_s: float
    latency: LatencySummary
    latencies_ms: list[float]


@dataclass
class DirectReference:
    onnx: str
    threads: int
    points: list[ReferencePoint]

    def at(self, batch: int) -> ReferencePoint | None:
        return next((p for p in self.points if p.batch == batch), None)

    @property
    def best_images_per_s(self) -> float:
        return max(p.images_per_s for p in self.points)


def reference_batches(served: ServedModel, request_batch: int) -> list[int]:
    """The request batch (per-request overhead) and the largest batch the server's dynamic
    batcher can form at concurrency 8 (the best throughput direct ORT offers it)."""
    largest = min(served.max_batch_size, 8 * request_batch)
    return sorted({request_batch, largest})


def measure_reference(
    onnx_path: Path,
    served: ServedModel,
    request_batch: int,
    side: int | None,
    settings: DirectSettings | None = None,
    observer: Observer | None = None,
) -> DirectReference:
    observer = observer or Silent()
    settings = settings or DirectSettings()
    threads = settings.threads or physical_cores()
    session = cpu_session(str(onnx_path), threads)
    names = [spec.name for spec in served.outputs]
    points = []
    for batch in reference_batches(served, request_batch):
        observer.phase(f"{served.name} · direct onnxruntime reference · batch {batch}")
        feed = request_payloads(served, batch, side, variants=1)[0]
        run = partial(session.run, names, feed)
        for _ in range(settings.warmup):
            run()
        (latencies,) = time_turns([run], settings.turn_limits, observer.progress)
        summary = summarize(latencies)
        points.append(ReferencePoint(batch, batch / (summary.mean_ms / 1000), summary, latencies))
    return DirectReference(str(onnx_path), threads, points)
