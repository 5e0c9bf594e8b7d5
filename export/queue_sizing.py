"""Size a model's server-side queue from its measured throughput and a latency budget.

Without a bound, Triton queues every request it receives: under overload the queue grows
until clients give up, and the server's memory with it. The published config therefore
carries a queue policy: at most as many waiting requests as the model drains within the
latency budget, and none waiting longer than the budget. The throughput is measured here,
on the export machine, with ONNX Runtime on the model's first verification case (the tuned
image size); on faster serving hardware the queue is conservative, never too long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from prodgen.export.verify import onnx_session
from prodgen.model_repository.config import BatchingOptions, queue_policy_for

DEFAULT_LATENCY_BUDGET_S = 5.0
TIMED_RUNS = 2


@dataclass(frozen=True)
class QueueSizing:
    items_per_second: float
    latency_budget_s: float
    batching: BatchingOptions

    def describe(self) -> str:
        b = self.batching
        return (
            f"measured {self.items_per_second:.1f} items/s here; queue at most {b.max_queue_size} requests, "
            f"each at most {b.queue_timeout_us / 1e6:g} s (latency budget {self.latency_budget_s:g} s)"
        )


def measure_items_per_second(onnx_path: Path, inputs: dict[str, np.ndarray]) -> float:
    """Items per second of the best of a few ONNX Runtime runs on `inputs` (after one warm-up)."""
    session = onnx_session(onnx_path)
    outputs = [o.name for o in session.get_outputs()]
    session.run(outputs, inputs)
    best = float("inf")
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        session.run(outputs, inputs)
        best = min(best, time.perf_counter() - start)
    return len(next(iter(inputs.values()))) / max(best, 1e-9)


def size_queue(
    onnx_path: Path, inputs: dict[str, np.ndarray], batching: BatchingOptions, latency_budget_s: float
) -> QueueSizing:
    """`batching` with its queue bounded, unless the caller already chose a queue size."""
    items_per_second = measure_items_per_second(onnx_path, inputs)
    if batching.max_queue_size > 0:
        return QueueSizing(items_per_second, latency_budget_s, batching)
    size, timeout_us = queue_policy_for(items_per_second, latency_budget_s, batching.max_batch_size)
    return QueueSizing(
        items_per_second, latency_budget_s, replace(batching, max_queue_size=size, queue_timeout_us=timeout_us)
    )
