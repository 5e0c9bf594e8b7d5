"""Load generators for served mode, and the log every request they send is counted in.

Closed loop (concurrency N): N workers, each with its own connection (a gRPC channel to a
Triton endpoint, or any other transport through `connect`), send a request, wait for its
answer, and send the next. Open loop (request rate): requests leave on a
schedule, evenly spaced or with Poisson arrivals, whether or not earlier ones have come
back, so queueing at the server shows in the latency as it would for a shop's traffic.

Both are bounded: a request budget per level, a per-request timeout, an in-flight cap
for the open loop, and `stop()` + `join()` that wait at most one timeout for stragglers.
Every request reserves its number before it is sent and ends as completed or as an
error, so completed + errors = sent once a generator has joined.

tritonclient is imported where requests are built, not at module level, so that direct
mode (which shares the report types) runs where tritonclient is not installed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from prodgen import triton_request
from prodgen.bench.payloads import Payload
from prodgen.contract import TensorSpec

if TYPE_CHECKING:
    import tritonclient.grpc as grpcclient

Arrival = Literal["constant", "poisson"]
MAX_DISTINCT_ERRORS = 5


@dataclass(frozen=True)
class RequestSample:
    sent_s: float
    """Seconds after the level started."""
    latency_ms: float
    ok: bool
    lag_ms: float | None = None
    """Open loop: how late the request left against its schedule."""

    @property
    def done_s(self) -> float:
        return self.sent_s + self.latency_ms / 1000


class RequestLog:
    """Thread-safe record of one load level: what was sent, what came back."""

    def __init__(self, max_requests: int) -> None:
        self.origin = time.perf_counter()
        self.max_requests = max_requests
        self.sent = 0
        self.completed = 0
        self.errors = 0
        self.samples: list[RequestSample] = []
        self.error_messages: Counter[str] = Counter()
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.perf_counter() - self.origin

    def reserve(self) -> bool:
        """Count one request as sent, unless the level's budget is spent."""
        with self._lock:
            if self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def record(self, sent_s: float, done_s: float, error: str | None, lag_ms: float | None = None) -> None:
        with self._lock:
            self.samples.append(RequestSample(sent_s, (done_s - sent_s) * 1000, error is None, lag_ms))
            if error is None:
                self.completed += 1
            else:
                self.errors += 1
                if error in self.error_messages or len(self.error_messages) < MAX_DISTINCT_ERRORS:
                    self.error_messages[error] += 1

    def finished_between(self, start_s: float, end_s: float) -> list[RequestSample]:
        with self._lock:
            return [s for s in self.samples if start_s <= s.done_s < end_s]

    @property
    def budget_spent(self) -> bool:
        with self._lock:
            return self.sent >= self.max_requests and self.completed + self.errors >= self.sent


@dataclass(frozen=True)
class Endpoint:
    url: str
    model: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    timeout_s: float


def _error_text(error: Exception) -> str:
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException):
        return (
            f"{error.status() or 'error'}: {(error.message() or '').splitlines()[0] if error.message() else ''}".strip()
        )
    return f"{type(error).__name__}: {error}"


def infer_inputs(endpoint: Endpoint, payload: Payload) -> list[grpcclient.InferInput]:
    return triton_request.infer_inputs(endpoint.inputs, payload)


def requested_outputs(endpoint: Endpoint) -> list[grpcclient.InferRequestedOutput]:
    return triton_request.requested_outputs(endpoint.outputs)


class Connection(Protocol):
    """One worker's link to a server: sends the request for a payload and waits for its answer."""

    def infer(self, payload_index: int) -> None: ...

    def close(self) -> None: ...


Connect = Callable[[Endpoint, list[Payload]], Connection]
"""Opens one worker's connection; the closed loop calls it once per worker, in that worker's thread."""


class TritonConnection:
    """The KServe v2 gRPC link every Triton endpoint speaks: its own channel, requests built once."""

    def __init__(self, endpoint: Endpoint, payloads: list[Payload]) -> None:
        import tritonclient.grpc as grpcclient

        self.endpoint = endpoint
        self.client = grpcclient.InferenceServerClient(endpoint.url)
        self.requests = [infer_inputs(endpoint, payload) for payload in payloads]
        self.outputs = requested_outputs(endpoint)

    def infer(self, payload_index: int) -> None:
        self.client.infer(
            self.endpoint.model,
            self.requests[payload_index],
            outputs=self.outputs,
            client_timeout=self.endpoint.timeout_s,
        )

    def close(self) -> None:
        self.client.close()


class ClosedLoop:
    def __init__(
        self, endpoint: Endpoint, payloads: list[Payload], concurrency: int, connect: Connect = TritonConnection
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.endpoint = endpoint
        self.payloads = payloads
        self.concurrency = concurrency
        self.connect = connect
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, log: RequestLog) -> None:
        self._threads = [
            threading.Thread(target=self._worker, args=(index, log), name=f"bench-worker-{index}", daemon=True)
            for index in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def _worker(self, index: int, log: RequestLog) -> None:
        connection = self.connect(self.endpoint, self.payloads)
        turn = index
        try:
            while not self._stop.is_set() and log.reserve():
                payload_index = turn % len(self.payloads)
                turn += self.concurrency
                sent = log.now()
                error: str | None = None
                try:
                    connection.infer(payload_index)
                except Exception as failure:  # noqa: BLE001 - every failure is a counted error, the loop goes on
                    error = _error_text(failure)
                log.record(sent, log.now(), error)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=self.endpoint.timeout_s + 5)


class OpenLoop:
    def __init__(
        self,
        endpoint: Endpoint,
        payloads: list[Payload],
        rate: float,
        arrival: Arrival,
        max_in_flight: int,
        seed: int = 0,
    ) -> None:
        if rate <= 0:
            raise ValueError("the request rate must be positive")
        self.endpoint = endpoint
        self.payloads = payloads
        self.rate = rate
        self.arrival = arrival
        self.max_in_flight = max_in_flight
        self.rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._client: grpcclient.InferenceServerClient | None = None

    def _interval(self) -> float:
        return float(self.rng.exponential(1 / self.rate)) if self.arrival == "poisson" else 1 / self.rate

    def start(self, log: RequestLog) -> None:
        import tritonclient.grpc as grpcclient

        self._client = grpcclient.InferenceServerClient(self.endpoint.url)
        self._thread = threading.Thread(target=self._schedule, args=(log,), name="bench-scheduler", daemon=True)
        self._thread.start()

    def _done(self, log: RequestLog, sent: float, lag_ms: float, result: object, error: Exception | None) -> None:
        log.record(sent, log.now(), _error_text(error) if error is not None else None, lag_ms)
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _schedule(self, log: RequestLog) -> None:
        assert self._client is not None
        requests = [infer_inputs(self.endpoint, payload) for payload in self.payloads]
        outputs = requested_outputs(self.endpoint)
        due = log.now()
        turn = 0
        while not self._stop.is_set():
            delay = due - log.now()
            if delay > 0 and self._stop.wait(delay):
                break
            with self._idle:
                while self._in_flight >= self.max_in_flight and not self._stop.is_set():
                    self._idle.wait(0.05)
                if self._stop.is_set() or not log.reserve():
                    break
                self._in_flight += 1
            sent = log.now()
            lag_ms = max(0.0, (sent - due) * 1000)
            try:
                self._client.async_infer(
                    self.endpoint.model,
                    requests[turn % len(requests)],
                    callback=partial(self._done, log, sent, lag_ms),
                    outputs=outputs,
                    client_timeout=self.endpoint.timeout_s,
                )
            except Exception as failure:  # noqa: BLE001 - a request that could not leave is a counted error
                self._done(log, sent, lag_ms, result=None, error=failure)
            turn += 1
            due += self._interval()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=self.endpoint.timeout_s + 5)
        deadline = time.monotonic() + self.endpoint.timeout_s + 5
        with self._idle:
            while self._in_flight > 0 and time.monotonic() < deadline:
                self._idle.wait(0.05)
        if self._client is not None:
            self._client.close()
