"""Served mode: a model on any Triton gRPC endpoint under closed- and open-loop load.

Each load level (a concurrency, or a request rate) runs like perf_analyzer: warm-up,
then back-to-back measurement windows until the last few agree within the stability
tolerance (or a window limit is hit, and the level is marked unstable). A window lasts
at least `window_s` and until `min_window_requests` requests finished in it, so slow
models still get enough samples. Triton's statistics for the model are read at every
window edge; the figures of a level are those of its last `stable_windows` windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from prodgen.bench.events import Observer, Silent
from prodgen.bench.load import Arrival, ClosedLoop, Endpoint, OpenLoop, RequestLog, RequestSample
from prodgen.bench.overhead import PairedOverhead
from prodgen.bench.payloads import image_side, request_payloads
from prodgen.bench.reference import DirectReference
from prodgen.bench.stats import LatencySummary, WindowFigures, is_stable, spread, summarize, window_figures
from prodgen.bench.triton_stats import (
    LatencySplit,
    ModelStatistics,
    ServerWindow,
    StatisticsReader,
    difference,
    split_latency,
)
from prodgen.errors import ProdgenError

if TYPE_CHECKING:
    from prodgen.client.api import ServedModel

Mode = Literal["concurrency", "rate"]


@dataclass(frozen=True)
class ServedSettings:
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    rates: tuple[float, ...] = ()
    arrival: Arrival = "constant"
    request_batch: int = 1
    size: int | None = None
    warmup_s: float = 2.0
    window_s: float = 5.0
    min_window_requests: int = 10
    max_window_s: float = 30.0
    stability: float = 0.10
    stable_windows: int = 3
    max_windows: int = 10
    timeout_s: float = 60.0
    max_requests: int = 50_000
    """Per level: the request loop stops sending once this many were sent."""
    max_in_flight: int = 256
    seed: int = 0
    overhead_pairs: int = 30
    """With a direct reference: at least this many interleaved served/direct pairs (0: none)."""
    overhead_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.arrival not in ("constant", "poisson"):
            raise ProdgenError(f"--arrival must be constant or poisson, got '{self.arrival}'")


@dataclass(frozen=True)
class LevelSpec:
    mode: Mode
    concurrency: int | None = None
    rate: float | None = None
    arrival: Arrival | None = None

    @property
    def label(self) -> str:
        return f"c={self.concurrency}" if self.mode == "concurrency" else f"{self.rate:g}/s {self.arrival}"


@dataclass
class WindowRecord:
    start_s: float
    end_s: float
    completed: int
    errors: int
    throughput_rps: float
    latency_p50_ms: float | None


@dataclass
class LoadLevel:
    model: str
    mode: Mode
    concurrency: int | None
    rate: float | None
    arrival: Arrival | None
    request_batch: int
    stable: bool
    windows: list[WindowRecord]
    used_windows: int
    throughput_spread: float
    latency_spread: float
    sent: int
    completed: int
    errors: int
    measured_completed: int
    measured_errors: int
    throughput_rps: float
    images_per_s: float
    latency: LatencySummary | None
    split: LatencySplit | None
    """The server's statistics over the measured windows, with the client's share beside them."""
    error_messages: dict[str, int]
    late_fraction: float | None
    """Open loop: share of requests that left more than 10 ms behind schedule (client could not keep up)."""
    samples: list[RequestSample] = field(repr=False)

    @property
    def server(self) -> ServerWindow | None:
        return self.split

    @property
    def label(self) -> str:
        return LevelSpec(self.mode, self.concurrency, self.rate, self.arrival).label

    @property
    def unfinished(self) -> int:
        return self.sent - self.completed - self.errors

    @property
    def measured_latencies_ms(self) -> list[float]:
        """Latencies of the successful requests that finished in the measured windows."""
        if not self.used_windows:
            return []
        start, end = self.windows[-self.used_windows].start_s, self.windows[-1].end_s
        return [s.latency_ms for s in self.samples if s.ok and start <= s.done_s < end]


@dataclass
class ServedResult:
    url: str
    model: str
    server_version: str
    max_batch_size: int
    inputs: dict[str, list[int]]
    image_side: int | None
    payload: str
    settings: ServedSettings
    levels: list[LoadLevel]
    reference: DirectReference | None = None
    """Direct ONNX Runtime on the same ONNX and payloads, when the ONNX was at hand."""
    overhead: PairedOverhead | None = None
    """What the server adds per request, from interleaved served/direct pairs."""

    def level(self, concurrency: int) -> LoadLevel | None:
        return next((lv for lv in self.levels if lv.mode == "concurrency" and lv.concurrency == concurrency), None)


def _wait_window(
    log: RequestLog, start: float, settings: ServedSettings, observer: Observer, windows_done: int = 0
) -> float:
    """End of a window that started at `start` (seconds on the log's clock).

    Progress counts over the level's windows (at most `max_windows`), not within this one: a
    new window starting at 0 % read as the level going backwards (100 % → 48 %)."""
    total = settings.window_s * settings.max_windows
    while True:
        time.sleep(0.05)
        now = log.now()
        elapsed = now - start
        observer.progress(min(settings.window_s * windows_done + min(elapsed, settings.window_s), total), total)
        if log.budget_spent or elapsed >= settings.max_window_s:
            return now
        if elapsed >= settings.window_s and len(log.finished_between(start, now)) >= settings.min_window_requests:
            return now


def measure_level(
    generator: ClosedLoop | OpenLoop,
    endpoint: Endpoint,
    settings: ServedSettings,
    spec: LevelSpec,
    observer: Observer,
    triton_statistics: bool = True,
) -> LoadLevel:
    """One load level; `triton_statistics=False` for an endpoint that is not a Triton server."""
    log = RequestLog(settings.max_requests)
    statistics = StatisticsReader(endpoint.url, endpoint.model) if triton_statistics else None
    windows: list[WindowRecord] = []
    figures: list[WindowFigures] = []
    snapshots: list[ModelStatistics | None] = []
    generator.start(log)
    try:
        warm_until = log.now() + settings.warmup_s
        while log.now() < warm_until and not log.budget_spent:
            time.sleep(0.05)
        edge = log.now()
        snapshots.append(statistics.read() if statistics is not None else None)
        while len(windows) < settings.max_windows and not log.budget_spent:
            end = _wait_window(log, edge, settings, observer, len(windows))
            snapshots.append(statistics.read() if statistics is not None else None)
            finished = log.finished_between(edge, end)
            ok = [s.latency_ms for s in finished if s.ok]
            figure = window_figures(ok, end - edge)
            figures.append(figure)
            windows.append(
                WindowRecord(
                    edge, end, len(ok), len(finished) - len(ok), figure.throughput, figure.latency_ms if ok else None
                )
            )
            edge = end
            if is_stable(figures, settings.stability, settings.stable_windows):
                break
    finally:
        generator.stop()
        generator.join()
        if statistics is not None:
            statistics.close()
    return _summarize_level(log, windows, figures, snapshots, settings, spec, endpoint)


def _summarize_level(
    log: RequestLog,
    windows: list[WindowRecord],
    figures: list[WindowFigures],
    snapshots: list[ModelStatistics | None],
    settings: ServedSettings,
    spec: LevelSpec,
    endpoint: Endpoint,
) -> LoadLevel:
    used = min(settings.stable_windows, len(windows))
    stable = bool(windows) and is_stable(figures, settings.stability, settings.stable_windows)
    measured = log.finished_between(windows[-used].start_s, windows[-1].end_s) if used else []
    ok = [s.latency_ms for s in measured if s.ok]
    duration = windows[-1].end_s - windows[-used].start_s if used else 0.0
    latency = summarize(ok) if ok else None
    split: LatencySplit | None = None
    before, after = (snapshots[-used - 1], snapshots[-1]) if used else (None, None)
    if before is not None and after is not None:
        split = split_latency(latency.mean_ms if latency is not None else None, difference(before, after))
    lags = [s.lag_ms for s in log.samples if s.lag_ms is not None]
    throughput_spread, latency_spread = spread(figures, used) if used else (float("inf"), float("inf"))
    return LoadLevel(
        model=endpoint.model,
        mode=spec.mode,
        concurrency=spec.concurrency,
        rate=spec.rate,
        arrival=spec.arrival,
        request_batch=settings.request_batch,
        stable=stable,
        windows=windows,
        used_windows=used,
        throughput_spread=throughput_spread,
        latency_spread=latency_spread,
        sent=log.sent,
        completed=log.completed,
        errors=log.errors,
        measured_completed=len(ok),
        measured_errors=len(measured) - len(ok),
        throughput_rps=len(ok) / duration if duration > 0 else 0.0,
        images_per_s=len(ok) * settings.request_batch / duration if duration > 0 else 0.0,
        latency=latency,
        split=split,
        error_messages=dict(log.error_messages),
        late_fraction=sum(lag > 10.0 for lag in lags) / len(lags) if lags else None,
        samples=sorted(log.samples, key=lambda s: s.sent_s),
    )


def describe_payload(served: ServedModel, side: int | None, batch: int) -> str:
    parts = []
    for spec in served.inputs:
        if spec.is_image:
            parts.append(f"{spec.name}: UINT8 photographs {batch}×{side}×{side}×3 (skimage.data)")
        else:
            parts.append(f"{spec.name}: {spec.dtype} {[batch, *spec.dims]} (seeded)")
    return "; ".join(parts)


def run_served(url: str, model: str, settings: ServedSettings, observer: Observer | None = None) -> ServedResult:
    """Sweep the concurrency levels, then the request rates, of `settings` against `model` at `url`."""
    from prodgen.client.api import ProdgenClient

    observer = observer or Silent()
    if not settings.concurrency and not settings.rates:
        raise ProdgenError("nothing to measure: give at least one --concurrency or --rate")
    with ProdgenClient(url) as client:  # metadata calls: the client's own timeout, not the per-request one under test
        served = client.model(model)
        version = client.health().server_version
    if served.max_batch_size < 1:
        raise ProdgenError(f"{model} does not batch (max_batch_size 0); prodgen-bench sends batched requests")
    side = image_side(served, settings.size)
    payloads = request_payloads(served, settings.request_batch, side)
    endpoint = Endpoint(url, model, served.inputs, served.outputs, settings.timeout_s)
    specs = [LevelSpec("concurrency", concurrency=c) for c in settings.concurrency]
    specs += [LevelSpec("rate", rate=r, arrival=settings.arrival) for r in settings.rates]
    levels: list[LoadLevel] = []
    for spec in specs:
        generator: ClosedLoop | OpenLoop
        if spec.mode == "concurrency":
            generator = ClosedLoop(endpoint, payloads, spec.concurrency or 1)
        else:
            generator = OpenLoop(
                endpoint, payloads, spec.rate or 1.0, settings.arrival, settings.max_in_flight, settings.seed
            )
        observer.phase(f"{model} · {spec.label}")
        level = measure_level(generator, endpoint, settings, spec, observer)
        if not level.stable:
            observer.note(
                f"{model} {spec.label}: not stable after {len(level.windows)} windows "
                f"(throughput ±{100 * level.throughput_spread:.0f} %, p50 ±{100 * level.latency_spread:.0f} %)"
            )
        if level.errors:
            observer.note(
                f"{model} {spec.label}: {level.errors} of {level.sent} requests failed: {next(iter(level.error_messages), '')}"
            )
        levels.append(level)
        observer.result(level)
    return ServedResult(
        url=url,
        model=model,
        server_version=version,
        max_batch_size=served.max_batch_size,
        inputs={name: list(array.shape) for name, array in payloads[0].items()},
        image_side=side,
        payload=describe_payload(served, side, settings.request_batch),
        settings=settings,
        levels=levels,
    )
