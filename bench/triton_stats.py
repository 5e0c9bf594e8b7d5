"""Triton's own per-model statistics, read over gRPC and differenced over a measurement window.

Triton counts, cumulatively since the model loaded, each request's time in the queue,
in gathering inputs (compute_input), in the model (compute_infer) and in returning
outputs (compute_output), plus the whole server-side duration of each successful
request (success). The difference of two snapshots taken at the edges of a window,
divided by the number of requests, gives the server's share of a request's latency;
what the client measured beyond that is client-side work (serialising, gRPC) and network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class Duration:
    count: int = 0
    ns: int = 0


@dataclass(frozen=True)
class ModelStatistics:
    """Cumulative counters of one model (summed over its versions)."""

    inference_count: int
    execution_count: int
    durations: dict[str, Duration]


def parse_statistics(response: Mapping[str, Any], model: str) -> ModelStatistics:
    """From `get_inference_statistics(model, as_json=True)`; int64 fields arrive as strings."""
    inference = execution = 0
    totals = {name: [0, 0] for name in _DURATIONS}
    found = False
    for entry in response.get("model_stats", []):
        if entry.get("name") != model:
            continue
        found = True
        inference += int(entry.get("inference_count", 0))
        execution += int(entry.get("execution_count", 0))
        stats = entry.get("inference_stats", {})
        for name in _DURATIONS:
            item = stats.get(name, {})
            totals[name][0] += int(item.get("count", 0))
            totals[name][1] += int(item.get("ns", 0))
    if not found:
        raise ValueError(f"the server reported no statistics for model '{model}'")
    return ModelStatistics(inference, execution, {name: Duration(c, ns) for name, (c, ns) in totals.items()})


@dataclass(frozen=True)
class ServerWindow:
    """The server's view of one window, per request, in milliseconds."""

    requests: int
    failed: int
    executions: int
    inferences: int
    server_ms: float | None
    queue_ms: float | None
    compute_input_ms: float | None
    compute_infer_ms: float | None
    compute_output_ms: float | None

    @property
    def average_batch(self) -> float | None:
        """Inferences (images) per model execution: how much the dynamic batcher combined."""
        return self.inferences / self.executions if self.executions else None

    @property
    def server_overhead_ms(self) -> float | None:
        """Server time outside queue and compute: request handling, response sending."""
        parts = (self.queue_ms, self.compute_input_ms, self.compute_infer_ms, self.compute_output_ms)
        if self.server_ms is None or any(p is None for p in parts):
            return None
        return self.server_ms - sum(p for p in parts if p is not None)


def _per_request_ms(before: Duration, after: Duration) -> float | None:
    count = after.count - before.count
    return (after.ns - before.ns) / count / 1e6 if count > 0 else None


def difference(before: ModelStatistics, after: ModelStatistics) -> ServerWindow:
    if after.inference_count < before.inference_count:
        raise ValueError("statistics went backwards: was the model reloaded during the window?")
    b, a = before.durations, after.durations
    return ServerWindow(
        requests=a["success"].count - b["success"].count,
        failed=a["fail"].count - b["fail"].count,
        executions=after.execution_count - before.execution_count,
        inferences=after.inference_count - before.inference_count,
        server_ms=_per_request_ms(b["success"], a["success"]),
        queue_ms=_per_request_ms(b["queue"], a["queue"]),
        compute_input_ms=_per_request_ms(b["compute_input"], a["compute_input"]),
        compute_infer_ms=_per_request_ms(b["compute_infer"], a["compute_infer"]),
        compute_output_ms=_per_request_ms(b["compute_output"], a["compute_output"]),
    )


@dataclass(frozen=True)
class LatencySplit(ServerWindow):
    """Where a request's mean latency went: the server's window (its parts) and the rest.

    It extends the window rather than copying its figures, so a report stores them once."""

    client_ms: float | None
    """The client's mean latency over the same window; None when no request succeeded."""
    client_and_network_ms: float | None
    """Client mean latency minus the server's mean request time: serialising, gRPC, network."""


def split_latency(client_mean_ms: float | None, server: ServerWindow) -> LatencySplit:
    rest = client_mean_ms - server.server_ms if client_mean_ms is not None and server.server_ms is not None else None
    window = {item.name: getattr(server, item.name) for item in fields(server)}
    return LatencySplit(**window, client_ms=client_mean_ms, client_and_network_ms=rest)


class StatisticsReader:
    """Snapshots of one model's statistics; None where the server gives none, so a server
    without statistics still gets client-side figures."""

    def __init__(self, url: str, model: str) -> None:
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(url)
        self.model = model

    def read(self) -> ModelStatistics | None:
        try:
            return parse_statistics(self.client.get_inference_statistics(self.model, as_json=True), self.model)
        except Exception:  # noqa: BLE001 - a server without statistics still gets client-side figures
            return None

    def close(self) -> None:
        self.client.close()
