"""The fleet client against three real embedded Triton servers, one SIGKILLed under load and restarted."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from prodgen.client import ProdgenClient
from prodgen.client.aio import AsyncProdgenClient
from prodgen.client.fleet import ChannelSecurity, Fleet, FleetPolicy, ReplicaStats, resolve_endpoints
from prodgen.errors import ProdgenError
from prodgen.seeding import latents_from_seed
from prodgen.serve.server import EmbeddedServer, ServerOptions
from tests_support import all_running, free_port

pytestmark = pytest.mark.e2e

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
"""Linux routes all of 127/8 to loopback: three replicas on one port, as pods behind a headless Service."""
SEEDS = 8
DEADLINE_S = 5.0
CONCURRENCY = 16
POLICY = FleetPolicy(probe_interval_s=0.25)


def closed_port_url() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def fleet_repository(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("fleet") / "models"
    shutil.copytree(exported_repository / "dcgan", repository / "dcgan")
    return repository


@pytest.fixture(scope="module")
def expected(fleet_repository: Path) -> dict[int, np.ndarray]:
    session = ort.InferenceSession(str(fleet_repository / "dcgan" / "1" / "model.onnx"))
    return {s: session.run(["output_image"], {"z": latents_from_seed(s, 1, 100)})[0][0] for s in range(SEEDS)}


@pytest.fixture(scope="module")
def replicas(fleet_repository: Path) -> Iterator[list[EmbeddedServer]]:
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    servers = [
        EmbeddedServer(ServerOptions(fleet_repository, host, grpc_port, http_port, metrics_port, intra_op_threads=1))
        for host in HOSTS
    ]
    with all_running(servers):
        yield servers


def urls(servers: list[EmbeddedServer]) -> list[str]:
    return [server.options.grpc_url for server in servers]


def close_to(image: np.ndarray, want: np.ndarray) -> bool:
    return image.shape == want.shape and int(np.abs(image.astype(int) - want.astype(int)).max()) <= 1


@dataclass
class Call:
    start: float
    seconds: float
    ok: bool
    right: bool
    error: str = ""


class MixedLoad:
    """CONCURRENCY callers at once: half are threads sharing one `ProdgenClient`, half asyncio
    tasks sharing one `AsyncProdgenClient`, each client with its own fleet over the same replicas."""

    def __init__(self, urls: list[str], expected: dict[int, np.ndarray]) -> None:
        self.urls = urls
        self.expected = expected
        self.calls: list[Call] = []
        self.fleets: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _record(self, seed: int, start: float, image: np.ndarray | None, error: str = "") -> None:
        right = image is not None and close_to(image, self.expected[seed])
        with self._lock:
            self.calls.append(Call(start, time.monotonic() - start, image is not None, right, error))

    def _sync_worker(self, client: ProdgenClient, index: int) -> None:
        seed = index
        while not self._stop.is_set():
            seed = (seed + 1) % SEEDS
            start = time.monotonic()
            try:
                self._record(seed, start, client.generate("dcgan", seed=seed, count=1)[0])
            except ProdgenError as error:
                self._record(seed, start, None, str(error))

    async def _async_load(self) -> None:
        async with AsyncProdgenClient(self.urls, timeout_s=DEADLINE_S, policy=POLICY) as client:
            self.fleets["async"] = client.fleet

            async def worker(index: int) -> None:
                seed = index
                while not self._stop.is_set():
                    seed = (seed + 1) % SEEDS
                    start = time.monotonic()
                    try:
                        self._record(seed, start, (await client.generate("dcgan", seed=seed, count=1))[0])
                    except ProdgenError as error:
                        self._record(seed, start, None, str(error))

            await asyncio.gather(*(worker(i) for i in range(CONCURRENCY // 2)))

    def stats(self, url: str) -> list[ReplicaStats]:
        return [fleet.stats()[url] for fleet in self.fleets.values()]

    def __enter__(self) -> MixedLoad:
        client = ProdgenClient(urls=self.urls, timeout_s=DEADLINE_S, policy=POLICY)
        assert client.fleet is not None
        self.fleets["sync"] = client.fleet
        self._client = client
        self._threads = [threading.Thread(target=self._sync_worker, args=(client, i)) for i in range(CONCURRENCY // 2)]
        self._threads.append(threading.Thread(target=asyncio.run, args=(self._async_load(),)))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._client.close()


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_a_replica_sigkilled_under_load_costs_no_call_and_is_used_again_after_restart(
    replicas: list[EmbeddedServer], expected: dict[int, np.ndarray]
) -> None:
    victim = replicas[1]
    victim_url = victim.options.grpc_url
    with MixedLoad(urls(replicas), expected) as load:
        assert wait_until(lambda: len(load.fleets) == 2, 30)
        assert wait_until(lambda: all(s.successes > 10 for u in urls(replicas) for s in load.stats(u)), 60)
        killed_at = time.monotonic()
        assert victim._process is not None
        os.killpg(victim._process.pid, signal.SIGKILL)
        assert wait_until(lambda: not any(s.healthy for s in load.stats(victim_url)), 10), "the dead replica is ejected"
        time.sleep(1.0)  # calls keep coming while it is down
        victim.stop()
        replicas[1] = EmbeddedServer(victim.options).start()
        assert wait_until(lambda: all(s.healthy for s in load.stats(victim_url)), 30), "re-admitted after restart"
        readmitted_at = time.monotonic()
        served_before = [s.successes for s in load.stats(victim_url)]

        def used_again() -> bool:
            return all(s.successes > b + 10 for s, b in zip(load.stats(victim_url), served_before, strict=True))

        assert wait_until(used_again, 30), "both clients send calls to the restarted replica again"
    calls = load.calls
    stats = {name: fleet.stats() for name, fleet in load.fleets.items()}

    failed = [c for c in calls if not c.ok]
    wrong = [c for c in calls if c.ok and not c.right]
    during = sorted(c.seconds for c in calls if killed_at <= c.start <= readmitted_at)
    p99 = during[min(len(during) - 1, int(0.99 * len(during)))] if during else float("nan")
    print(
        f"\nfleet under load (c={CONCURRENCY}: {CONCURRENCY // 2} threads + {CONCURRENCY // 2} asyncio tasks, 3 replicas, deadline {DEADLINE_S:g} s): {len(calls)} calls, "
        f"{len(wrong)} wrong outputs, {len(failed)} failed; during the failure ({readmitted_at - killed_at:.1f} s): "
        f"{len(during)} calls, p99 {1000 * p99:.0f} ms; per replica "
        + "; ".join(
            f"{name} {url}: {s.successes} ok/{s.failures} faults/{s.ejections} ejections/{s.readmissions} re-admissions"
            for name, per_url in stats.items()
            for url, s in per_url.items()
        )
    )
    assert wrong == []
    for call in failed:  # allowed only as one clear line, and never past the deadline
        assert "no replica answered within the 5 s deadline" in call.error
        assert call.seconds < DEADLINE_S + 1.0
    for per_url in stats.values():
        assert per_url[victim_url].ejections >= 1 and per_url[victim_url].readmissions >= 1


def test_a_dns_name_resolving_to_every_replica_spreads_calls_async(
    replicas: list[EmbeddedServer], expected: dict[int, np.ndarray]
) -> None:
    port = replicas[0].options.grpc_port
    pods = list(HOSTS)

    def headless_service(host: str, _port: int) -> list[str]:
        assert host == "triton-headless.shop.svc"
        return pods

    async def run() -> tuple[list[np.ndarray], dict[str, int]]:
        client = AsyncProdgenClient(
            dns=f"triton-headless.shop.svc:{port}", timeout_s=DEADLINE_S, resolver=headless_service
        )
        async with client:
            images = await asyncio.gather(*(client.generate("dcgan", seed=i % SEEDS) for i in range(48)))
            return [image[0] for image in images], {url: s.successes for url, s in client.fleet.stats().items()}

    images, per_replica = asyncio.run(run())
    assert all(close_to(image, expected[i % SEEDS]) for i, image in enumerate(images))
    assert set(per_replica) == {f"{host}:{port}" for host in HOSTS}
    assert all(count > 0 for count in per_replica.values()), per_replica


def test_a_dead_replica_in_the_list_is_skipped_and_a_dead_fleet_fails_within_the_deadline(
    replicas: list[EmbeddedServer], expected: dict[int, np.ndarray]
) -> None:
    dead = closed_port_url()
    with ProdgenClient(urls=[dead, replicas[0].options.grpc_url], timeout_s=DEADLINE_S) as client:
        for seed in range(4):
            assert close_to(client.generate("dcgan", seed=seed)[0], expected[seed])
        assert client.fleet is not None and not client.fleet.stats()[dead].healthy
        with pytest.raises(ProdgenError, match="model 'nope' is not served"):
            client.generate("nope")

    async def all_dead() -> float:
        async with AsyncProdgenClient([closed_port_url(), closed_port_url()], timeout_s=1.0) as client:
            start = time.monotonic()
            with pytest.raises(ProdgenError, match=r"config of dcgan: no replica answered within the 1 s deadline"):
                await client.generate("dcgan")
            return time.monotonic() - start

    assert asyncio.run(all_dead()) < 2.0
    with ProdgenClient(urls=[closed_port_url()], timeout_s=1.0) as client:
        start = time.monotonic()
        with pytest.raises(ProdgenError, match=r"no replica answered within the 1 s deadline \(127\.0\.0\.1:\d+: "):
            client.health()
        assert time.monotonic() - start < 2.0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a CA")
def test_a_tls_client_with_a_bearer_token_fails_cleanly_against_a_plaintext_replica(
    replicas: list[EmbeddedServer], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=prodgen-test-ca"]
        + ["-keyout", str(tmp_path / "ca.key"), "-out", str(ca)],
        check=True,
        capture_output=True,
    )
    security = ChannelSecurity(root_certificates=ca, bearer_token="s3cret")
    assert security.headers() == {"authorization": "Bearer s3cret"}
    with ProdgenClient(urls=[replicas[0].options.grpc_url], timeout_s=2.0, security=security) as client:
        start = time.monotonic()
        with pytest.raises(ProdgenError, match="no replica answered within the 2 s deadline"):
            client.health()
        assert time.monotonic() - start < 3.0
    with pytest.raises(ProdgenError, match="root certificates .* do not exist; expected a PEM file"):
        ProdgenClient(urls=["127.0.0.1:1"], security=ChannelSecurity(root_certificates=tmp_path / "missing.pem"))


def test_a_headless_service_name_becomes_one_replica_per_address() -> None:
    assert "127.0.0.1:8001" in resolve_endpoints("localhost:8001")
    with pytest.raises(ProdgenError, match="is not a host:port gRPC endpoint"):
        resolve_endpoints("triton-headless")
    with pytest.raises(ProdgenError, match="cannot resolve 'no-such-host.invalid'"):
        resolve_endpoints("no-such-host.invalid:8001")


def test_a_dns_fleet_follows_pods_that_come_and_go() -> None:
    pods = ["127.0.0.1"]
    policy = FleetPolicy(probe_interval_s=0.05, resolve_interval_s=0.1, probe_timeout_s=0.2)
    fleet = Fleet(dns="triton-headless.shop.svc:8001", policy=policy, resolver=lambda _host, _port: list(pods))
    try:
        assert set(fleet.stats()) == {"127.0.0.1:8001"}
        pods[:] = ["127.0.0.2", "127.0.0.3"]
        assert wait_until(lambda: set(fleet.stats()) == {"127.0.0.2:8001", "127.0.0.3:8001"}, 5)
        pods[:] = []  # a DNS answer with no pod keeps the last known ones rather than none
        time.sleep(0.5)
        assert set(fleet.stats()) == {"127.0.0.2:8001", "127.0.0.3:8001"}
    finally:
        fleet.close()
