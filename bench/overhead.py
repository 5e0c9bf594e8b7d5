"""What the server adds to a request, measured in interleaved pairs.

A served request and a direct ONNX Runtime call on the same ONNX file and the same payload
run one after the other, in turns whose order rotates, and the figure is the median of the
per-pair differences. Comparing a served level with a direct run taken minutes earlier
measures the machine as much as the server: on a shared 2-core machine identical ONNX
Runtime processes were seen to differ by 75-141 ms on a 256×256 style network, while a
pair taken within a second shares whatever the machine was doing.

Every call is followed by a pause that is not timed. ONNX Runtime's worker threads spin
for a while after a run, and Triton finishes a request's bookkeeping after the response
has left; on 2 cores the next call would compete with both. Measured on a 256×256 style
network: without a pause the served side read +18 to +25 ms over direct (Triton's
compute_output rose from 0.7 to 9 ms), with 20 ms +13 ms, with 100 ms +2 to +6 ms. What
the figure describes is the cost of one request on an otherwise idle server.

Triton's own statistics over the pairs split the added time further: client+network is
the client latency minus the server's request time, and the server's compute_infer minus
the direct call is what the python backend (IPC, stub, its own ONNX Runtime session) adds.

Each round also times an empty call to the same server over the same channel (gRPC
ServerLive, no model, no payload), in the same rotation and with the same pause: what a
request costs before Triton does any inference work, which any gRPC service on the host pays.
On the 2-core build machine it was 1.0-1.4 ms after an idle pause (0.4-0.6 ms back to back)
while a loopback TCP ping between two processes took 0.05-0.1 ms, so a threshold such as
"≤ 1.5 ms added" is judged against a floor the report shows beside it.

The direct session is set up as the served one is (threads, spinning), so that the figure is
what serving adds, not a difference between two session configurations: under load from
other processes, spinning worker threads alone were measured to cost 46-156 ms (95 % CI) per
256×256 style-network call.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prodgen.bench.events import Observer, Silent
from prodgen.bench.load import Endpoint, infer_inputs, requested_outputs
from prodgen.bench.payloads import Payload
from prodgen.bench.stats import (
    Interval,
    LatencySummary,
    ThresholdVerdict,
    bootstrap_interval,
    percentile,
    row_percentile,
    summarize,
)
from prodgen.bench.triton_stats import ServerWindow, StatisticsReader, difference
from prodgen.onnx_sessions import cpu_session
from prodgen.serve.session_threads import ALLOW_SPINNING, intra_op_threads

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class PairSettings:
    min_pairs: int = 30
    min_seconds: float = 5.0
    max_pairs: int = 2000
    warmup_pairs: int = 3
    pause_s: float = 0.1
    """Idle time after every call, outside the timings (see the module docstring)."""
    threads: int = 0
    """Direct ONNX Runtime intra-op threads; 0: what a served session gets by default (`intra_op_threads`)."""
    spinning: bool = ALLOW_SPINNING
    """Direct ONNX Runtime worker threads spin after a run, or sleep as the served session's do."""


@dataclass
class PairedOverhead:
    pairs: int
    served: LatencySummary
    direct: LatencySummary
    added_p50_ms: float
    """Median of (served − direct) over the pairs."""
    added_p90_ms: float
    server: ServerWindow | None
    threads: int
    differences_ms: list[float] = field(repr=False)
    empty_call_ms: list[float] = field(default_factory=list, repr=False)
    """The empty gRPC call of each round (ServerLive on the same channel); empty when not timed."""
    added_p50: Interval = field(init=False)
    """The median added time with its bootstrap interval over the pairs' differences."""
    added_p90: Interval = field(init=False)

    empty_call: LatencySummary | None = field(init=False)
    beyond_empty_call_p50: Interval | None = field(init=False)
    """The median over rounds of served − direct − the empty call: what the inference path adds beyond it."""

    def __post_init__(self) -> None:
        self.added_p50 = bootstrap_interval(self.differences_ms)
        self.added_p90 = bootstrap_interval(self.differences_ms, row_percentile(90))
        if self.empty_call_ms and len(self.empty_call_ms) != len(self.differences_ms):
            raise ValueError("an empty call needs timing in every round, or in none")
        self.empty_call = summarize(self.empty_call_ms) if self.empty_call_ms else None
        self.beyond_empty_call_p50 = (
            bootstrap_interval([d - e for d, e in zip(self.differences_ms, self.empty_call_ms, strict=True)])
            if self.empty_call_ms
            else None
        )

    def adds_at_most(self, threshold_ms: float) -> ThresholdVerdict:
        """ "The server adds ≤ threshold" only when the whole interval of the median says so."""
        return ThresholdVerdict(self.added_p50, threshold_ms, "at most")

    @property
    def client_and_network_ms(self) -> float | None:
        """Mean client latency minus the server's mean request time."""
        if self.server is None or self.server.server_ms is None:
            return None
        return self.served.mean_ms - self.server.server_ms

    @property
    def backend_over_direct_ms(self) -> float | None:
        """The server's mean compute_infer minus the mean direct call: the python backend's share."""
        if self.server is None or self.server.compute_infer_ms is None:
            return None
        return self.server.compute_infer_ms - self.direct.mean_ms


def paired_differences(served_ms: list[float], direct_ms: list[float]) -> tuple[float, float]:
    """Median and p90 of the per-pair differences served − direct."""
    if len(served_ms) != len(direct_ms) or not served_ms:
        raise ValueError("pairs need as many served as direct latencies, and at least one")
    differences = [s - d for s, d in zip(served_ms, direct_ms, strict=True)]
    return statistics.median(differences), percentile(differences, 90)


def _timed(call: Callable[[], object], pause_s: float) -> float:
    start = time.perf_counter()
    call()
    elapsed = (time.perf_counter() - start) * 1000
    time.sleep(pause_s)
    return elapsed


def measure_paired_overhead(
    endpoint: Endpoint,
    onnx_path: Path,
    payload: Payload,
    settings: PairSettings | None = None,
    observer: Observer | None = None,
) -> PairedOverhead:
    """Rotate one served request, one direct ONNX Runtime call on `payload` and one empty call
    to the server until `min_pairs` rounds and `min_seconds` have passed (at most `max_pairs`)."""
    import tritonclient.grpc as grpcclient

    settings = settings or PairSettings()
    observer = observer or Silent()
    threads = intra_op_threads(settings.threads)
    session = cpu_session(str(onnx_path), threads, settings.spinning)
    names = [spec.name for spec in endpoint.outputs]
    feed = {spec.name: payload[spec.name] for spec in endpoint.inputs if spec.name in payload}
    client = grpcclient.InferenceServerClient(endpoint.url)
    request, outputs = infer_inputs(endpoint, payload), requested_outputs(endpoint)
    reader = StatisticsReader(endpoint.url, endpoint.model)

    def direct() -> object:
        return session.run(names, feed)

    def served() -> object:
        return client.infer(endpoint.model, request, outputs=outputs, client_timeout=endpoint.timeout_s)

    def empty() -> object:
        return client.is_server_live(client_timeout=endpoint.timeout_s)

    served_ms: list[float] = []
    direct_ms: list[float] = []
    empty_ms: list[float] = []
    turns = [(served, served_ms), (direct, direct_ms), (empty, empty_ms)]
    try:
        for _ in range(settings.warmup_pairs):
            served(), direct(), empty()
        before = reader.read()
        start = time.perf_counter()
        while len(served_ms) < settings.max_pairs:
            elapsed = time.perf_counter() - start
            if len(served_ms) >= settings.min_pairs and elapsed >= settings.min_seconds:
                break
            observer.progress(
                min(
                    len(served_ms) / max(settings.min_pairs, 1),
                    elapsed / settings.min_seconds if settings.min_seconds else 1.0,
                ),
                1.0,
            )
            first = len(served_ms) % len(turns)
            for call, timings in turns[first:] + turns[:first]:
                timings.append(_timed(call, settings.pause_s))
        after = reader.read()
    finally:
        reader.close()
        client.close()
    added_p50, added_p90 = paired_differences(served_ms, direct_ms)
    server = difference(before, after) if before is not None and after is not None else None
    return PairedOverhead(
        pairs=len(served_ms),
        served=summarize(served_ms),
        direct=summarize(direct_ms),
        added_p50_ms=added_p50,
        added_p90_ms=added_p90,
        server=server,
        threads=threads,
        differences_ms=[s - d for s, d in zip(served_ms, direct_ms, strict=True)],
        empty_call_ms=empty_ms,
    )
