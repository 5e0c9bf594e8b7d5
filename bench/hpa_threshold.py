"""The autoscaler's threshold, derived from a `prodgen-bench` report of one replica.

The HorizontalPodAutoscaler (docker/kubernetes/base/hpa.yaml) scales on the average time a
request waits in Triton's queue on each pod: rate(nv_inference_queue_duration_us) /
rate(nv_inference_request_success), served to Kubernetes by prometheus-adapter as the pod
metric `triton_queue_us_per_request`.

Derivation, from the served concurrency sweep of one model: the *knee* is the stable level
with the highest throughput, the most one replica delivers. Past it, more concurrency only
adds queueing: throughput stays flat while each request waits about one more compute time
per extra request in flight. So a replica is counted as saturated once its requests wait,
on average, longer than the knee's queue time plus half a request's compute time there:

    threshold_us = 1000 × (queue_ms(knee) + 0.5 × compute_infer_ms(knee))

Run `python -m prodgen.bench.hpa_threshold REPORT [--model NAME]` and put the number in hpa.yaml
(tests/deploy checks that the committed manifest and the committed report agree).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from prodgen.errors import ProdgenError

QUEUE_METRIC = "triton_queue_us_per_request"


@dataclass(frozen=True)
class QueueThreshold:
    model: str
    knee_concurrency: int
    knee_throughput_rps: float
    knee_queue_ms: float
    knee_compute_ms: float

    @property
    def threshold_us(self) -> int:
        return round(1000 * (self.knee_queue_ms + 0.5 * self.knee_compute_ms))

    def describe(self) -> str:
        return (
            f"{self.model}: knee at concurrency {self.knee_concurrency} ({self.knee_throughput_rps:.2f} req/s, "
            f"queue {self.knee_queue_ms:.2f} ms, compute {self.knee_compute_ms:.2f} ms) → "
            f"{QUEUE_METRIC} target {self.threshold_us} µs = 1000 × ({self.knee_queue_ms:.3f} + 0.5 × "
            f"{self.knee_compute_ms:.3f})"
        )


def queue_threshold(report: dict, model: str | None = None) -> QueueThreshold:
    served = [entry for entry in report.get("served", []) if model is None or entry["model"] == model]
    if not served:
        raise ProdgenError(
            f"the report has no served sweep{f' for {model}' if model else ''}; run prodgen-bench with a served model"
        )
    entry = served[0]
    levels = [level for level in entry["levels"] if level["mode"] == "concurrency" and level["stable"]]
    if not levels:
        raise ProdgenError(f"the report's served sweep of {entry['model']} has no stable concurrency level")
    knee = max(levels, key=lambda level: level["throughput_rps"])
    return QueueThreshold(
        model=entry["model"],
        knee_concurrency=int(knee["concurrency"]),
        knee_throughput_rps=float(knee["throughput_rps"]),
        knee_queue_ms=float(knee["server"]["queue_ms"]),
        knee_compute_ms=float(knee["server"]["compute_infer_ms"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="prodgen-bench report.json")
    parser.add_argument("--model", help="served model whose sweep to use (default: the first)")
    arguments = parser.parse_args()
    print(queue_threshold(json.loads(arguments.report.read_text()), arguments.model).describe())


if __name__ == "__main__":
    main()
