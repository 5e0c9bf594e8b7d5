"""Which CPU runtime is faster here: a candidate against FP32 ONNX Runtime, timed in turns.

Export publishes a CPU variant (`<name>_openvino`, `<name>_int8`) only where it beats the
FP32 ONNX model it would replace, measured on this machine at batch 1 and 4 on the model's
sample inputs. The two take turns (one run each, again and again), so a busy moment of a
shared machine slows both alike and their ratio holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime

from prodgen.onnx_sessions import cpu_session
from prodgen.serve.session_threads import ALLOW_SPINNING
from prodgen.turns import TurnLimits, time_turns
from prodgen.zoo.samples import sample_inputs
from prodgen.zoo.spec import ZooModel

Feed = dict[str, np.ndarray]
Runner = Callable[[Feed], object]
RACE_BATCHES = (1, 4)
RACE_LIMITS = TurnLimits(min_runs=5, min_seconds=2.0, max_runs=200, max_seconds=20.0)
"""Per batch size, after one untimed run of each: at least 5 runs and 2 s of each runtime, at most 20 s."""


def served_session(onnx_path: Path) -> onnxruntime.InferenceSession:
    """ONNX Runtime on the CPU as `prodgen serve` runs a model: every core, worker threads spinning
    or not as served (a spinning pool would also take cores from the runtime timed after it)."""
    return cpu_session(str(onnx_path), 0, spinning=ALLOW_SPINNING)


@dataclass(frozen=True)
class Race:
    candidate: str
    baseline_ms: dict[int, float]
    """Median latency of FP32 ONNX Runtime per batch size."""
    candidate_ms: dict[int, float]
    side: int | None
    """The image side raced at (None for models without image inputs)."""

    def speedup(self, batch: int) -> float:
        return self.baseline_ms[batch] / self.candidate_ms[batch]

    @property
    def wins(self) -> bool:
        """Faster than FP32 ONNX Runtime at every batch size raced."""
        return all(self.speedup(batch) > 1.0 for batch in self.baseline_ms)

    def describe(self) -> str:
        at = f" at {self.side}×{self.side}" if self.side else ""
        parts = [
            f"batch {batch}: {self.candidate_ms[batch]:.1f} vs {self.baseline_ms[batch]:.1f} ms ({self.speedup(batch):.2f}×)"
            for batch in self.baseline_ms
        ]
        return f"{self.candidate} vs FP32 ONNX Runtime{at}, median of turns: " + ", ".join(parts)


def race(
    model: ZooModel,
    candidate: str,
    baseline: Runner,
    challenger: Runner,
    side: int | None = None,
    batches: Sequence[int] = RACE_BATCHES,
    limits: TurnLimits = RACE_LIMITS,
) -> Race:
    """Median latencies of `baseline` and `challenger` on sample inputs, timed in turns per batch size."""
    side = side or (model.bounds.opt_side if model.bounds and model.image_inputs else None)
    baseline_ms: dict[int, float] = {}
    candidate_ms: dict[int, float] = {}
    for batch in batches:
        feed = sample_inputs(model, batch, side, side)
        baseline(feed)
        challenger(feed)
        base, cand = time_turns([partial(baseline, feed), partial(challenger, feed)], limits)
        baseline_ms[batch] = float(np.median(base))
        candidate_ms[batch] = float(np.median(cand))
    return Race(candidate, baseline_ms, candidate_ms, side)
