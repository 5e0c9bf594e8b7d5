"""Several Triton replicas behind one client: spreading, ejection, re-admission, retries within a deadline.

A shop runs several Triton pods behind a headless Service (one DNS name, one address per
pod) or lists the replicas' URLs. `Fleet` stands where one `tritonclient.grpc` client
stood: each call goes to the healthy replica with the fewest calls in flight; a call that
fails because of the replica (refused, reset, unavailable, timed out while the caller still
has time) ejects that replica and is retried on another one, until the caller's deadline,
never past it. Retrying is safe because a prodgen inference is a pure function of its
inputs and seed. A background prober checks every replica's `/v2/health/ready` over gRPC
on a fresh channel (a channel that saw its server die may sit in gRPC's reconnect
back-off for minutes), re-admits a recovered replica and ejects one that stops answering.

Errors about the request itself (a wrong shape, an unknown model) are not retried: they
would fail the same way everywhere.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen.errors import ProdgenError

T = TypeVar("T")

REPLICA_FAULT_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "ABORTED")
"""gRPC status codes that say something about the replica, not about the request."""
REPLICA_FAULT_MESSAGES = (
    "failed to connect",
    "connection refused",
    "socket closed",
    "stub process",
    "connection reset",
)


@dataclass(frozen=True)
class ChannelSecurity:
    """TLS and a bearer token for a Triton behind a TLS-terminating, authenticating front."""

    root_certificates: Path | None = None
    """PEM bundle that signs the servers' certificates; set it to talk TLS."""
    bearer_token: str | None = None
    """Sent as `authorization: Bearer …` gRPC metadata on every call."""

    @property
    def tls(self) -> bool:
        return self.root_certificates is not None

    def headers(self) -> dict[str, str] | None:
        return {"authorization": f"Bearer {self.bearer_token}"} if self.bearer_token else None

    def client_arguments(self) -> dict[str, Any]:
        """Keyword arguments for `tritonclient.grpc[.aio].InferenceServerClient`."""
        if self.root_certificates is None:
            return {}
        if not self.root_certificates.is_file():
            raise ProdgenError(f"root certificates {self.root_certificates} do not exist; expected a PEM file")
        return {"ssl": True, "root_certificates": str(self.root_certificates)}


@dataclass(frozen=True)
class FleetPolicy:
    probe_interval_s: float = 0.5
    """How often every replica's readiness is checked (ejected ones to re-admit them)."""
    probe_timeout_s: float = 1.0
    attempt_timeout_s: float | None = None
    """Longest a single attempt may take before trying another replica (None: the whole deadline)."""
    resolve_interval_s: float = 10.0
    """How often a DNS name is resolved again, so pods that come and go are followed."""
    all_ejected_pause_s: float = 0.05
    """Pause between rounds when every replica is ejected (the deadline caps it)."""


@dataclass
class ReplicaStats:
    url: str
    healthy: bool = True
    successes: int = 0
    failures: int = 0
    ejections: int = 0
    readmissions: int = 0
    in_flight: int = 0
    last_error: str = ""


def is_replica_fault(error: InferenceServerException) -> bool:
    status = (error.status() or "").upper()
    message = (error.message() or str(error)).lower()
    return any(code in status for code in REPLICA_FAULT_STATUSES) or any(m in message for m in REPLICA_FAULT_MESSAGES)


def resolve_endpoints(target: str, resolver: Callable[[str, int], list[str]] | None = None) -> list[str]:
    """`host:port` → one `address:port` per address the name resolves to (a headless Service's pods)."""
    host, separator, port_text = target.rpartition(":")
    if not separator or not port_text.isdigit():
        raise ProdgenError(f"'{target}' is not a host:port gRPC endpoint (e.g. triton-headless:8001)")
    port = int(port_text)
    try:
        addresses = (resolver or _system_addresses)(host, port)
    except OSError as error:
        raise ProdgenError(f"cannot resolve '{host}': {error}") from error
    return [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in dict.fromkeys(addresses)]


def _system_addresses(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class Replicas:
    """Which replicas are healthy and which one takes the next call; shared by the sync and async fleets."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ProdgenError("a fleet needs at least one replica URL")
        self._lock = threading.Lock()
        self.stats: dict[str, ReplicaStats] = {url: ReplicaStats(url) for url in dict.fromkeys(urls)}
        self._turn = 0

    def urls(self) -> list[str]:
        with self._lock:
            return list(self.stats)

    def replace(self, urls: Sequence[str]) -> tuple[list[str], list[str]]:
        """Follow a new DNS answer; returns (added, removed)."""
        with self._lock:
            wanted = list(dict.fromkeys(urls))
            if not wanted:
                return [], []
            added = [url for url in wanted if url not in self.stats]
            removed = [url for url in self.stats if url not in wanted]
            for url in removed:
                del self.stats[url]
            for url in added:
                self.stats[url] = ReplicaStats(url)
            return added, removed

    def pick(self, tried: set[str]) -> str | None:
        """The healthy, untried replica with the fewest calls in flight; rotating ties; None if none."""
        with self._lock:
            urls = list(self.stats)
            self._turn += 1
            order = urls[self._turn % len(urls) :] + urls[: self._turn % len(urls)] if urls else []
            candidates = [url for url in order if url not in tried and self.stats[url].healthy]
            if not candidates:
                return None
            chosen = min(candidates, key=lambda url: self.stats[url].in_flight)
            self.stats[chosen].in_flight += 1
            return chosen

    def pick_any(self, tried: set[str]) -> str | None:
        """When every replica is ejected: try an untried one anyway (it may be back before the prober saw it)."""
        with self._lock:
            for url, stats in self.stats.items():
                if url not in tried:
                    stats.in_flight += 1
                    return url
            return None

    def succeeded(self, url: str) -> None:
        with self._lock:
            if url in self.stats:
                stats = self.stats[url]
                stats.in_flight -= 1
                stats.successes += 1

    def failed(self, url: str, error: str, replica_fault: bool) -> None:
        with self._lock:
            if url in self.stats:
                stats = self.stats[url]
                stats.in_flight -= 1
                if replica_fault:
                    stats.failures += 1
                    stats.last_error = error
                    if stats.healthy:
                        stats.healthy = False
                        stats.ejections += 1

    def probed(self, url: str, ready: bool, error: str = "") -> bool:
        """Record a health probe; returns True when it re-admits the replica."""
        with self._lock:
            stats = self.stats.get(url)
            if stats is None:
                return False
            if ready and not stats.healthy:
                stats.healthy = True
                stats.readmissions += 1
                return True
            if not ready and stats.healthy:
                stats.healthy = False
                stats.ejections += 1
                stats.last_error = error or "not ready"
            return False

    def snapshot(self) -> dict[str, ReplicaStats]:
        with self._lock:
            return {url: ReplicaStats(**vars(stats)) for url, stats in self.stats.items()}

    def describe_failures(self) -> str:
        with self._lock:
            return "; ".join(f"{url}: {s.last_error or 'no answer'}" for url, s in self.stats.items())


@dataclass
class Deadline:
    seconds: float
    start: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.start)


def deadline_error(what: str, deadline: Deadline, replicas: Replicas) -> ProdgenError:
    return ProdgenError(
        f"{what}: no replica answered within the {deadline.seconds:g} s deadline ({replicas.describe_failures()})"
    )


def attempt_timeout(policy: FleetPolicy, deadline: Deadline) -> float:
    remaining = deadline.remaining()
    return remaining if policy.attempt_timeout_s is None else min(remaining, policy.attempt_timeout_s)


def error_text(error: InferenceServerException) -> str:
    return (error.message() or str(error)).strip().splitlines()[0][:200]


class FleetBase:
    """What the sync and async fleets share: the replicas, the security, and one call's choices."""

    def __init__(
        self,
        urls: Sequence[str] = (),
        dns: str | None = None,
        security: ChannelSecurity | None = None,
        policy: FleetPolicy | None = None,
        resolver: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self.dns = dns
        self.security = security or ChannelSecurity()
        self.security.client_arguments()  # a missing certificate file fails here, in the caller's thread
        self.policy = policy or FleetPolicy()
        self._resolver = resolver
        self.replicas = Replicas(list(urls) + (resolve_endpoints(dns, resolver) if dns else []))
        self._start()

    def _start(self) -> None:
        """Set up the transport (clients, prober) once the replicas are known."""

    def stats(self) -> dict[str, ReplicaStats]:
        return self.replicas.snapshot()

    def _next(self, what: str, deadline: Deadline, tried: set[str]) -> str | None:
        """The replica for the next attempt; None after every replica was tried (pause, then a new round)."""
        if deadline.remaining() <= 0:
            raise deadline_error(what, deadline, self.replicas)
        url = self.replicas.pick(tried) or self.replicas.pick_any(tried)
        if url is None:
            tried.clear()
        else:
            tried.add(url)
        return url

    def _pause_s(self, deadline: Deadline) -> float:
        return max(0.0, min(self.policy.all_ejected_pause_s, deadline.remaining()))

    def _failed(self, url: str, error: InferenceServerException) -> None:
        """Record a failed attempt; re-raise it when it is the request's fault, not the replica's."""
        fault = is_replica_fault(error)
        self.replicas.failed(url, error_text(error), fault)
        if not fault:
            raise error

    def _resolve_again(self) -> list[str]:
        """Follow the DNS name to the pods it has now; returns the replicas that went away."""
        if not self.dns:
            return []
        try:
            return self.replicas.replace(resolve_endpoints(self.dns, self._resolver))[1]
        except ProdgenError:
            return []  # keep the replicas we know while DNS is unavailable


class Fleet(FleetBase):
    """A drop-in for the `tritonclient.grpc.InferenceServerClient` calls prodgen makes, over many replicas.

    Each method takes `client_timeout` as the caller's whole deadline, as the single-server
    client does for one call.
    """

    def _start(self) -> None:
        self._clients: dict[str, grpcclient.InferenceServerClient] = {}
        self._clients_lock = threading.Lock()
        self._stop = threading.Event()
        self._prober = threading.Thread(target=self._probe_forever, name="prodgen-fleet-prober", daemon=True)
        self._prober.start()

    def _client(self, url: str) -> grpcclient.InferenceServerClient:
        with self._clients_lock:
            if url not in self._clients:
                self._clients[url] = grpcclient.InferenceServerClient(url, **self.security.client_arguments())
            return self._clients[url]

    def _swap_client(self, url: str, client: grpcclient.InferenceServerClient | None) -> None:
        with self._clients_lock:
            old = self._clients.pop(url, None)
            if client is not None:
                self._clients[url] = client
        if old is not None:
            old.close()

    def call(self, what: str, method: str, *args: Any, client_timeout: float | None = None, **kwargs: Any) -> Any:
        """Run `InferenceServerClient.<method>` on one replica, retrying replica faults on others."""
        deadline = Deadline(client_timeout if client_timeout is not None else 60.0)
        tried: set[str] = set()
        while True:
            url = self._next(what, deadline, tried)
            if url is None:
                time.sleep(self._pause_s(deadline))
                continue
            try:
                function = getattr(self._client(url), method)
                timeout = attempt_timeout(self.policy, deadline)
                result = function(*args, headers=self.security.headers(), client_timeout=timeout, **kwargs)
            except InferenceServerException as error:
                self._failed(url, error)
                continue
            self.replicas.succeeded(url)
            return result

    def is_server_live(self, client_timeout: float | None = None) -> bool:
        return bool(self.call("server live", "is_server_live", client_timeout=client_timeout))

    def is_server_ready(self, client_timeout: float | None = None) -> bool:
        return bool(self.call("server ready", "is_server_ready", client_timeout=client_timeout))

    def get_server_metadata(self, client_timeout: float | None = None) -> Any:
        return self.call("server metadata", "get_server_metadata", client_timeout=client_timeout)

    def get_model_repository_index(self, client_timeout: float | None = None) -> Any:
        return self.call("repository index", "get_model_repository_index", client_timeout=client_timeout)

    def get_model_config(self, model_name: str, client_timeout: float | None = None) -> Any:
        return self.call(f"config of {model_name}", "get_model_config", model_name, client_timeout=client_timeout)

    def infer(self, model_name: str, inputs: list[Any], client_timeout: float | None = None, **kwargs: Any) -> Any:
        return self.call(
            f"inference on {model_name}", "infer", model_name, inputs, client_timeout=client_timeout, **kwargs
        )

    def _probe(self, url: str) -> None:
        healthy = self.replicas.snapshot()[url].healthy
        # An ejected replica is probed on a fresh channel: the old one may sit in reconnect back-off.
        client = (
            self._client(url) if healthy else grpcclient.InferenceServerClient(url, **self.security.client_arguments())
        )
        try:
            ready = client.is_server_ready(headers=self.security.headers(), client_timeout=self.policy.probe_timeout_s)
            error = "" if ready else "not ready"
        except InferenceServerException as failure:
            ready, error = False, error_text(failure)
        if not healthy:
            if ready:
                self._swap_client(url, client)
            else:
                client.close()
        self.replicas.probed(url, ready, error)

    def _probe_forever(self) -> None:
        resolved_at = time.monotonic()
        while not self._stop.wait(self.policy.probe_interval_s):
            if time.monotonic() - resolved_at >= self.policy.resolve_interval_s:
                resolved_at = time.monotonic()
                for url in self._resolve_again():
                    self._swap_client(url, None)
            for url in self.replicas.urls():
                if self._stop.is_set():
                    return
                try:
                    self._probe(url)
                except KeyError:
                    continue  # removed by a DNS change while probing

    def close(self) -> None:
        self._stop.set()
        self._prober.join(timeout=self.policy.probe_timeout_s + self.policy.probe_interval_s + 1)
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
