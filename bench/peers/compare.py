"""`prodgen-bench peers`: prodgen's served path against what a shop would build instead,
with the same model, weights, inputs and closed-loop load, in one run.

The model is exported and published as `prodgen-export` does (verified, prodgen's default
batching), served by `prodgen serve` as a user runs it, and every peer is started beside it
as its own server process. Before anything is timed, each peer answers every request
payload and its pictures are compared with prodgen's: a peer off by more than
`max_abs_diff` uint8 levels is refused and not measured.

The machine is shared and noisy, so the servers take turns: at each concurrency, one window
of prodgen, then one of each peer, and again for every round. The servers not being measured
are frozen (SIGSTOP) meanwhile, so none of them takes CPU from the one that is. Each window starts its own
closed loop (fresh connections, a warm-up) and is summarised with the served-mode code
(`measure_level`); a target's figures at a level pool the requests of all its windows.
While a window runs, the resident memory of the server's whole process tree is sampled.
"""

from __future__ import annotations

import dataclasses
import signal
import statistics
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prodgen.bench.events import Observer, Silent
from prodgen.bench.load import ClosedLoop, Connect, Endpoint, RequestSample, TritonConnection
from prodgen.bench.payloads import Payload, image_side, request_payloads
from prodgen.bench.peers.http_connection import HttpConnection
from prodgen.bench.peers.launch import (
    PEERS,
    PRODGEN,
    ModelSource,
    RunningServer,
    Target,
    start_server,
    tree_rss_mb,
    wait_ready,
)
from prodgen.bench.peers.settings import PeerSettings
from prodgen.bench.served import LevelSpec, LoadLevel, describe_payload, measure_level
from prodgen.bench.stats import LatencySummary, summarize
from prodgen.errors import ProdgenError

TRANSPORT = (
    "prodgen and PyTriton: Triton's KServe v2 gRPC protocol (tritonclient, raw tensor bytes); "
    "FastAPI and LitServe: HTTP/1.1 keep-alive POST of JSON, each array as dtype, shape and base64 of its raw bytes "
    "(uint8 pictures both ways, no image codec). One connection per client worker for every server."
)


@dataclass
class PictureCheck:
    target: str
    max_abs_diff: float | None
    accepted: bool
    detail: str


@dataclass
class Window:
    """One turn of one server at one concurrency."""

    round: int
    start_s: float
    end_s: float
    completed: int
    errors: int
    images_per_s: float
    p50_ms: float | None
    rss_peak_mb: float | None
    average_batch: float | None
    """Triton servers: images per model execution (what the dynamic batcher combined)."""
    compute_infer_ms: float | None
    queue_ms: float | None


@dataclass
class TargetLevel:
    target: str
    concurrency: int
    images_per_s: float
    latency: LatencySummary | None
    completed: int
    errors: int
    error_messages: dict[str, int]
    rss_peak_mb: float | None
    throughput_spread: float
    """Largest relative deviation of one window's images/s from the mean of the target's windows."""
    windows: list[Window]
    latencies_ms: list[float] = field(repr=False)


@dataclass
class PeersResult:
    model: str
    served_name: str
    image_side: int | None
    payload: str
    payload_variants: int
    transport: str
    prodgen_config: str
    targets: dict[str, str]
    """Name → what it is, prodgen first, in the order they take turns."""
    checks: list[PictureCheck]
    levels: list[TargetLevel]
    idle_rss_mb: dict[str, float]
    settings: PeerSettings
    load_average_start: str
    load_average_end: str = ""

    def level(self, target: str, concurrency: int) -> TargetLevel | None:
        return next((lv for lv in self.levels if lv.target == target and lv.concurrency == concurrency), None)

    @property
    def measured_peers(self) -> list[str]:
        return [name for name in self.targets if name != PRODGEN.name and any(lv.target == name for lv in self.levels)]


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def stop_on_sigterm() -> None:
    """SIGTERM ends the run through its `finally`, so the servers it started (each in its own
    process group, out of reach of a signal to this one) are stopped too."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def _connect(target: Target) -> Connect:
    return TritonConnection if target.protocol == "triton" else HttpConnection


def endpoint_for(server: RunningServer, template: Endpoint, peer_model: str | None = None) -> Endpoint:
    """`template` aimed at `server`; peers answer as `peer_model` (the FP32 model) when prodgen serves a variant."""
    model = template.model if server.target.name == PRODGEN.name or peer_model is None else peer_model
    return Endpoint(server.url, model, template.inputs, template.outputs, template.timeout_s)


def answers(server: RunningServer, endpoint: Endpoint, payloads: Sequence[Payload]) -> list[dict[str, np.ndarray]]:
    """The server's outputs for each payload, decoded to arrays."""
    if server.target.protocol == "http":
        connection = HttpConnection(endpoint, [])
        try:
            return [connection.outputs(payload) for payload in payloads]
        finally:
            connection.close()
    triton = TritonConnection(endpoint, list(payloads))
    results: list[dict[str, np.ndarray]] = []
    try:
        for request in triton.requests:
            result = triton.client.infer(
                endpoint.model, request, outputs=triton.outputs, client_timeout=endpoint.timeout_s
            )
            results.append({spec.name: result.as_numpy(spec.name) for spec in endpoint.outputs})
    finally:
        triton.close()
    return results


def compare_pictures(
    target: str, expected: Sequence[dict[str, np.ndarray]], actual: Sequence[dict[str, np.ndarray]], limit: int
) -> PictureCheck:
    """Accept `actual` when every output has the expected shape and dtype and differs by at most `limit` levels."""
    worst = 0.0
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        for name, reference in want.items():
            answer = got.get(name)
            if answer is None or answer.shape != reference.shape or answer.dtype != reference.dtype:
                shape = None if answer is None else (answer.shape, str(answer.dtype))
                detail = f"request {index}, output '{name}': got {shape}, prodgen gave {(reference.shape, str(reference.dtype))}"
                return PictureCheck(target, None, False, detail)
            worst = max(worst, float(np.abs(answer.astype(np.float64) - reference.astype(np.float64)).max(initial=0.0)))
    accepted = worst <= limit
    detail = f"largest difference {worst:g} uint8 levels over {len(expected)} requests ({'within' if accepted else 'beyond'} {limit})"
    return PictureCheck(target, worst, accepted, detail)


class RssSampler:
    """Peak resident memory of a process tree, sampled in the background while a window runs."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _run(self) -> None:
        while True:
            rss = tree_rss_mb(self.pid)
            self.peak_mb = rss if self.peak_mb is None else max(self.peak_mb, rss)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _measured(level: LoadLevel) -> list[RequestSample]:
    if not level.windows:
        return []
    start, end = level.windows[0].start_s, level.windows[-1].end_s
    return [s for s in level.samples if start <= s.done_s < end]


def _window(round_index: int, level: LoadLevel, rss_peak_mb: float | None) -> Window:
    split = level.split
    return Window(
        round=round_index,
        start_s=level.windows[0].start_s if level.windows else 0.0,
        end_s=level.windows[-1].end_s if level.windows else 0.0,
        completed=level.measured_completed,
        errors=level.measured_errors,
        images_per_s=level.images_per_s,
        p50_ms=level.latency.p50_ms if level.latency else None,
        rss_peak_mb=rss_peak_mb,
        average_batch=split.average_batch if split else None,
        compute_infer_ms=split.compute_infer_ms if split else None,
        queue_ms=split.queue_ms if split else None,
    )


def pool_windows(target: str, concurrency: int, visits: Sequence[tuple[LoadLevel, Window]]) -> TargetLevel:
    """One target's figures at one concurrency from all its windows: requests pooled, time added up."""
    ok = [s.latency_ms for level, _ in visits for s in _measured(level) if s.ok]
    duration = sum(w.end_s - w.start_s for level, w in visits if level.windows)
    rates = [w.images_per_s for _, w in visits]
    mean_rate = statistics.fmean(rates) if rates else 0.0
    messages: dict[str, int] = {}
    for level, _ in visits:
        for message, count in level.error_messages.items():
            messages[message] = messages.get(message, 0) + count
    peaks = [w.rss_peak_mb for _, w in visits if w.rss_peak_mb is not None]
    return TargetLevel(
        target=target,
        concurrency=concurrency,
        images_per_s=len(ok) / duration if duration > 0 else 0.0,  # one image a request
        latency=summarize(ok) if ok else None,
        completed=len(ok),
        errors=sum(w.errors for _, w in visits),
        error_messages=messages,
        rss_peak_mb=max(peaks) if peaks else None,
        throughput_spread=max(abs(r - mean_rate) for r in rates) / mean_rate if mean_rate > 0 else float("inf"),
        windows=[w for _, w in visits],
        latencies_ms=ok,
    )


def export_for_peers(model: str, workdir: Path, checkpoint: Sequence[Path], settings: PeerSettings) -> ModelSource:
    """Export, verify and publish `model` as `prodgen-export` does, with its default batching."""
    from prodgen import zoo
    from prodgen.bench.direct import latest_repository_onnx
    from prodgen.export.pipeline import ExportRequest, export_model
    from prodgen.model_repository.config import BatchingOptions

    entry = zoo.get(model)
    variant_parts = (settings.variant or "").split("_")
    repository = workdir / "models"
    weights = None if not checkpoint else checkpoint[0] if len(checkpoint) == 1 else list(checkpoint)
    export_model(
        ExportRequest(
            entry,
            repository,
            entry.name,
            checkpoint=weights,
            seed=settings.seed,
            batching=BatchingOptions(max_batch_size=settings.max_batch_size),
            int8="int8" in variant_parts,
            openvino="openvino" in variant_parts,
        )
    )
    served_name = f"{entry.name}_{settings.variant}" if settings.variant else entry.name
    if not (repository / served_name / "config.pbtxt").is_file():
        raise ProdgenError(
            f"{served_name} was not published: export keeps a variant only inside its fidelity gate and faster than "
            f"FP32 ONNX Runtime here (prodgen-export {entry.name} --int8 --openvino prints its decision)"
        )
    return ModelSource(
        model=entry.name,
        served_name=served_name,
        repository=repository,
        onnx=latest_repository_onnx(repository, entry.name),
        checkpoint=tuple(checkpoint),
        seed=settings.seed,
        max_batch_size=settings.max_batch_size,
        serve_threads=settings.serve_threads,
    )


def published_config(source: ModelSource) -> str:
    """The served model's batching and instances, as its published config.pbtxt says, and its threads."""
    from prodgen.model_repository.config import parse_pbtxt

    config = parse_pbtxt((source.repository / source.served_name / "config.pbtxt").read_text())
    batching = config.dynamic_batching
    policy = batching.default_queue_policy
    instances = sum(group.count for group in config.instance_group) or 1
    return (
        f"max_batch_size {config.max_batch_size}, dynamic batching max_queue_delay {batching.max_queue_delay_microseconds} µs, "
        f"{instances} instance(s), queue ≤ {policy.max_queue_size or 'unbounded'} requests "
        f"(timeout {policy.default_timeout_microseconds / 1e6:g} s); `prodgen serve` "
        + (
            "with its default ONNX Runtime threads"
            if source.serve_threads is None
            else f"--threads {source.serve_threads}"
        )
    )


def start_all(targets: Sequence[Target], source: ModelSource, logs: Path, observer: Observer) -> list[RunningServer]:
    servers: list[RunningServer] = []
    try:
        for target in targets:
            observer.phase(f"starting {target.name}")
            servers.append(start_server(target, source, logs))
        for server in servers:
            model = source.served_name if server.target.name == PRODGEN.name else source.model
            observer.phase(f"waiting for {server.target.name} to serve {model}")
            wait_ready(server, model)
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: Sequence[RunningServer]) -> None:
    for server in servers:
        server.stop()


def check_peers(
    servers: Sequence[RunningServer],
    endpoint: Endpoint,
    payloads: Sequence[Payload],
    limit: int,
    peer_model: str | None = None,
) -> list[PictureCheck]:
    """Each peer's pictures against prodgen's (the first server) on every payload.

    When prodgen serves a reduced-precision variant (`endpoint.model`) the peers are checked against
    prodgen's FP32 `peer_model`, and the variant's own distance from it is reported as prodgen's check.
    """
    reference, *peers = servers
    fp32 = dataclasses.replace(endpoint, model=peer_model) if peer_model else endpoint
    expected = answers(reference, endpoint_for(reference, fp32), payloads)
    checks = []
    if peer_model and peer_model != endpoint.model:
        from prodgen.export.fidelity import psnr_db

        variant = answers(reference, endpoint_for(reference, endpoint), payloads)
        variant_check = compare_pictures(reference.target.name, expected, variant, limit=255)
        worst = variant_check.max_abs_diff
        if worst is None:
            raise ProdgenError(f"{endpoint.model} against {peer_model}: {variant_check.detail}")
        psnr = psnr_db(
            [want[name] for want in expected for name in want],
            [got[name] for want, got in zip(expected, variant, strict=True) for name in want],
        )
        detail = (
            f"serves {endpoint.model}: PSNR {psnr:.2f} dB against its FP32 model {peer_model} "
            f"over {len(payloads)} requests, largest difference {worst:g} levels (inside the gate export applied); "
            f"peers are checked against {peer_model}"
        )
        checks.append(PictureCheck(reference.target.name, worst, True, detail))
    for server in peers:
        try:
            actual = answers(server, endpoint_for(server, fp32), payloads)
        except Exception as error:  # noqa: BLE001 - a peer that cannot answer is refused with the reason
            checks.append(PictureCheck(server.target.name, None, False, f"could not answer: {error}"))
            continue
        checks.append(compare_pictures(server.target.name, expected, actual, limit))
    return checks


def measure_turns(
    servers: Sequence[RunningServer],
    endpoint: Endpoint,
    payloads: list[Payload],
    settings: PeerSettings,
    observer: Observer,
    peer_model: str | None = None,
) -> list[TargetLevel]:
    levels = []
    for concurrency in settings.concurrency:
        visits: dict[str, list[tuple[LoadLevel, Window]]] = {server.target.name: [] for server in servers}
        window_settings = settings.window_settings(concurrency)
        for round_index in range(settings.rounds):
            for server in servers:
                name = server.target.name
                observer.phase(f"c={concurrency} · round {round_index + 1}/{settings.rounds} · {name}")
                if not server.alive():
                    raise ProdgenError(f"{name} stopped during the run; its log {server.log}:\n{server.log_tail()}")
                for other in servers:
                    if other is not server:
                        other.pause()
                server.resume()
                target_endpoint = endpoint_for(server, endpoint, peer_model)
                generator = ClosedLoop(target_endpoint, payloads, concurrency, _connect(server.target))
                with RssSampler(server.process.pid, settings.rss_interval_s) as rss:
                    level = measure_level(
                        generator,
                        target_endpoint,
                        window_settings,
                        LevelSpec("concurrency", concurrency=concurrency),
                        observer,
                        triton_statistics=server.target.protocol == "triton",
                    )
                visits[name].append((level, _window(round_index, level, rss.peak_mb)))
        for server in servers:
            server.resume()
        for server in servers:
            pooled = pool_windows(server.target.name, concurrency, visits[server.target.name])
            levels.append(pooled)
            observer.note(
                f"{pooled.target} c={concurrency}: {pooled.images_per_s:.2f} images/s"
                + (
                    f", p50 {pooled.latency.p50_ms:.0f} ms, p99 {pooled.latency.p99_ms:.0f} ms"
                    if pooled.latency
                    else ""
                )
            )
    return levels


def run_peers(
    model: str,
    settings: PeerSettings,
    checkpoint: Sequence[Path] = (),
    observer: Observer | None = None,
    workdir: Path | None = None,
) -> PeersResult:
    """Export `model`, serve it with prodgen and each peer, check their pictures, measure in turns."""
    from prodgen.client.api import ProdgenClient

    observer = observer or Silent()
    with tempfile.TemporaryDirectory(prefix="prodgen-bench-peers-") as temporary:
        work = workdir or Path(temporary)
        observer.phase(f"{model}: exporting, verifying and publishing as prodgen-export does")
        source = export_for_peers(model, work, checkpoint, settings)
        targets = [PRODGEN, *(PEERS[name] for name in settings.peers)]
        servers = start_all(targets, source, work / "logs", observer)
        try:
            stop_on_sigterm()
            with ProdgenClient(servers[0].url) as client:
                served = client.model(source.served_name)
            side = image_side(served, settings.size)
            payloads = request_payloads(served, 1, side)
            endpoint = Endpoint(servers[0].url, source.served_name, served.inputs, served.outputs, settings.timeout_s)
            idle = {server.target.name: tree_rss_mb(server.process.pid) for server in servers}
            observer.phase("checking every peer's pictures against prodgen's")
            checks = check_peers(servers, endpoint, payloads, settings.max_abs_diff, source.model)
            refused = {check.target for check in checks if not check.accepted}
            for check in checks:
                if not check.accepted:
                    observer.note(f"{check.target} refused, not measured: {check.detail}")
            measured = [server for server in servers if server.target.name not in refused]
            result = PeersResult(
                model=model,
                served_name=source.served_name,
                image_side=side,
                payload=describe_payload(served, side, 1),
                payload_variants=len(payloads),
                transport=TRANSPORT,
                prodgen_config=published_config(source),
                targets={server.target.name: server.target.description for server in servers},
                checks=checks,
                levels=[],
                idle_rss_mb=idle,
                settings=settings,
                load_average_start=load_average(),
            )
            result.levels = measure_turns(measured, endpoint, payloads, settings, observer, source.model)
            result.load_average_end = load_average()
            return result
        finally:
            stop_all(servers)
