"""What carrying pictures over gRPC costs a large request, and what Triton's system shared
memory saves, measured in interleaved pairs on one server (`prodgen-bench transfer`).

Each pair is the same request made twice, once with the pixels inside the gRPC messages and
once through shared-memory regions (`ProdgenClient(..., shared_memory=True)`), in alternating
order, each followed by an untimed pause. Triton's statistics are read around every request,
so each one is split into the model's own run (compute_infer: the python backend's stub and its
ONNX Runtime session, identical in both modes) and the rest: serialising, the loopback socket,
Triton's input gathering and output handling, and the client's copies. The saving is stated
with its bootstrap interval over the pairs (`prodgen.bench.stats`).

Shared memory replaces only the client↔Triton hop. The embedded server's python backend still
copies each input from Triton into the stub's own shared memory and each output back, in both
modes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from prodgen.bench.events import Observer, Silent
from prodgen.bench.payloads import Payload
from prodgen.bench.stats import Interval, LatencySummary, bootstrap_interval, summarize
from prodgen.bench.triton_stats import ModelStatistics, ServerWindow, StatisticsReader, difference

MODES = ("grpc", "shared-memory")


@dataclass(frozen=True)
class TransferSettings:
    pairs: int = 8
    warmup_pairs: int = 1
    pause_s: float = 0.5
    """Idle time after every request, outside the timings, so one request's clean-up does not land in the next."""
    timeout_s: float = 600.0


@dataclass
class ModeFigures:
    mode: str
    latency: LatencySummary
    latencies_ms: list[float] = field(repr=False)
    compute_infer_ms: list[float] = field(repr=False)
    """Triton's compute_infer of each request (None-free: requests without statistics are left out)."""
    outside_model_ms: list[float] = field(repr=False)
    """Client latency minus compute_infer, per request: what carrying the pictures cost."""
    server: list[ServerWindow] = field(repr=False)


@dataclass
class TransferComparison:
    url: str
    model: str
    input_bytes: int
    output_bytes: int
    shapes: dict[str, list[int]]
    pairs: int
    modes: list[ModeFigures]
    saved_ms: Interval
    """Median of grpc − shared-memory client latency over the pairs, with its interval."""
    saved_outside_model_ms: Interval | None
    """The same for the time outside the model's run (None without Triton statistics)."""
    identical: bool
    """Both modes returned the same pictures."""


Outputs = dict[str, np.ndarray]


def _one(
    call: Callable[[], Outputs], reader: StatisticsReader, pause_s: float
) -> tuple[float, ServerWindow | None, Outputs]:
    before = reader.read()
    start = time.perf_counter()
    result = call()
    elapsed = (time.perf_counter() - start) * 1000
    time.sleep(pause_s)
    return elapsed, _counted(reader, before), result


def _counted(reader: StatisticsReader, before: ModelStatistics | None, wait_s: float = 2.0) -> ServerWindow | None:
    """The request's own statistics: Triton counts a request after its response has left, so
    they are read again until it shows (or `wait_s` passes)."""
    deadline = time.monotonic() + wait_s
    while before is not None:
        after = reader.read()
        if after is None:
            return None
        window = difference(before, after)
        if window.requests > 0 or time.monotonic() > deadline:
            return window
        time.sleep(0.005)
    return None


def measure_transfer(
    url: str, model: str, payload: Payload, settings: TransferSettings | None = None, observer: Observer | None = None
) -> TransferComparison:
    """Alternate the plain-gRPC and the shared-memory request of `payload` for `settings.pairs` pairs."""
    from prodgen.client.api import ProdgenClient

    settings = settings or TransferSettings()
    observer = observer or Silent()
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
    windows: dict[str, list[ServerWindow | None]] = {mode: [] for mode in MODES}
    identical = True
    with (
        ProdgenClient(url, settings.timeout_s) as plain,
        ProdgenClient(url, settings.timeout_s, shared_memory=True) as shared,
    ):
        reader = StatisticsReader(url, model)
        calls = {"grpc": lambda: plain.infer(model, payload), "shared-memory": lambda: shared.infer(model, payload)}
        try:
            for _ in range(settings.warmup_pairs):
                for mode in MODES:
                    _one(calls[mode], reader, settings.pause_s)
            for index in range(settings.pairs):
                observer.progress(index, settings.pairs)
                results: dict[str, Outputs] = {}
                for mode in MODES if index % 2 == 0 else tuple(reversed(MODES)):
                    elapsed, window, results[mode] = _one(calls[mode], reader, settings.pause_s)
                    latencies[mode].append(elapsed)
                    windows[mode].append(window)
                first, second = (results[mode] for mode in MODES)
                identical &= all(np.array_equal(first[name], second[name]) for name in first)
        finally:
            reader.close()
        output = plain.infer(model, payload)
    grpc, shared_memory = modes = [_figures(mode, latencies[mode], windows[mode]) for mode in MODES]
    paired = len(grpc.outside_model_ms) == len(shared_memory.outside_model_ms) == settings.pairs
    return TransferComparison(
        url=url,
        model=model,
        input_bytes=sum(array.nbytes for array in payload.values()),
        output_bytes=sum(array.nbytes for array in output.values()),
        shapes={name: list(array.shape) for name, array in {**payload, **output}.items()},
        pairs=settings.pairs,
        modes=modes,
        saved_ms=bootstrap_interval(_differences(grpc.latencies_ms, shared_memory.latencies_ms)),
        saved_outside_model_ms=bootstrap_interval(_differences(grpc.outside_model_ms, shared_memory.outside_model_ms))
        if paired
        else None,
        identical=identical,
    )


def _differences(first: list[float], second: list[float]) -> list[float]:
    return [a - b for a, b in zip(first, second, strict=True)]


def _figures(mode: str, latencies: list[float], windows: list[ServerWindow | None]) -> ModeFigures:
    measured = [
        (latency, w) for latency, w in zip(latencies, windows, strict=True) if w and w.compute_infer_ms is not None
    ]
    return ModeFigures(
        mode=mode,
        latency=summarize(latencies),
        latencies_ms=latencies,
        compute_infer_ms=[w.compute_infer_ms for _, w in measured if w.compute_infer_ms is not None],
        outside_model_ms=[latency - (w.compute_infer_ms or 0.0) for latency, w in measured],
        server=[w for _, w in measured],
    )
