"""`prodgen serve` starts the real server, reports readiness, drains and stops cleanly, and refuses
what it cannot serve at start with one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen.client import ProdgenClient
from prodgen.errors import ProdgenError
from prodgen.photos import photo_batch
from prodgen.serve.processes import STARTER_VARIABLE, listener_pid
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.serve.triton_distribution import find_distribution, server_environment
from tests_support import console_script, free_port

pytestmark = pytest.mark.e2e


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def serve_command(repository: Path, grpc_port: int, log_file: Path) -> list[str]:
    return [
        console_script("prodgen"),
        "serve",
        "--repository",
        str(repository),
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--log-file",
        str(log_file),
    ]


def start_serving(repository: Path, grpc_port: int, log_file: Path) -> tuple[subprocess.Popen[str], str]:
    """`prodgen serve` running and ready, and its ready line."""
    process = subprocess.Popen(
        serve_command(repository, grpc_port, log_file), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 180
    line = ""
    while time.monotonic() < deadline and not line.startswith("ready"):
        line = process.stdout.readline()
        assert line or process.poll() is None, "prodgen serve exited before it was ready"
    return process, line


def wait_gone(pids: set[int], timeout_s: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.2)
    return [pid for pid in pids if alive(pid)]


@pytest.mark.parametrize(
    ("stop_signal", "exit_code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"]
)
def test_serve_reports_ready_drains_and_leaves_no_process_behind(
    exported_repository: Path, tmp_path: Path, stop_signal: int, exit_code: int
) -> None:
    grpc_port, log_file = free_port(), tmp_path / "triton.log"
    process, line = start_serving(exported_repository, grpc_port, log_file)
    try:
        assert line.startswith("ready: 3 models") and str(log_file) in line
        url = f"127.0.0.1:{grpc_port}"
        with ProdgenClient(url) as client:
            assert client.health().ready
        server_tree = descendants(process.pid)
        assert server_tree, "tritonserver should run as a child of prodgen serve"
        with ProdgenClient(url, timeout_s=120) as client, ThreadPoolExecutor(1) as pool:
            client.model("fast-neural-style")
            in_flight = pool.submit(client.stylize, "fast-neural-style", photo_batch(1, 512, 512)[0])
            time.sleep(1.0)
            process.send_signal(stop_signal)
            refusals = refusals_until_closed(url)
            assert in_flight.result().shape == (512, 512, 3)  # a request in flight at the signal is answered
        assert set(refusals) == {"StatusCode.UNAVAILABLE"}  # never NOT_FOUND: a client with retries goes elsewhere
        print(f"after {signal.Signals(stop_signal).name}: refusals until the port closed: {dict(refusals)}")
        assert process.wait(timeout=120) == exit_code
        assert wait_gone(server_tree, 5) == []
        assert "prodgen serve" in log_file.read_text()  # the log outlives the server
    finally:
        if process.poll() is None:
            process.kill()


def refusals_until_closed(url: str, seconds: float = 60.0) -> Counter[str]:
    """Send small generator requests until the server's port is closed; the refusals by status."""
    raw = grpcclient.InferenceServerClient(url)
    z = grpcclient.InferInput("z", [1, 100], "FP32")
    z.set_data_from_numpy(np.zeros((1, 100), np.float32))
    refusals: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                raw.infer("dcgan", [z], client_timeout=10)
            except InferenceServerException as error:
                refusals[error.status() or "error"] += 1
                if "failed to connect" in (error.message() or ""):
                    break
            time.sleep(0.01)
    finally:
        raw.close()
    return refusals


def test_a_busy_port_is_refused_at_start_in_one_line(exported_repository: Path, tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = subprocess.run(
            serve_command(exported_repository, port, tmp_path / "log"), capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"gRPC port {port} on 127.0.0.1 is already in use" in result.stderr


def test_killing_prodgen_serve_takes_tritonserver_with_it(exported_repository: Path, tmp_path: Path) -> None:
    grpc_port = free_port()
    process, line = start_serving(exported_repository, grpc_port, tmp_path / "log")
    try:
        assert line.startswith("ready")
        server_tree = descendants(process.pid)
        process.kill()
        process.wait()
        assert wait_gone(server_tree) == [], "tritonserver outlived a kill -9 of prodgen serve"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", grpc_port))  # the port is free again
    finally:
        if process.poll() is None:
            process.kill()


def test_a_start_that_fails_leaves_no_process_and_no_shared_memory(exported_repository: Path, tmp_path: Path) -> None:
    options = ServerOptions(
        exported_repository,
        grpc_port=free_port(),
        http_port=free_port(),
        metrics_port=free_port(),
        startup_timeout_s=1.0,  # models are still loading (their stubs' shared memory exists) when it gives up
        log_file=tmp_path / "log",
    )
    server = EmbeddedServer(options)
    with pytest.raises(ProdgenError, match=r"not ready after 1 s; its log \(.*log\) ends"):
        server.start()
    assert not server.running()
    assert list(Path("/dev/shm").glob(f"{server._shm_prefix}*")) == []
    assert "starting tritonserver" in (tmp_path / "log").read_text()


def test_an_orphaned_tritonserver_on_the_port_is_named_at_start(tmp_path: Path) -> None:
    """A tritonserver an earlier prodgen serve left behind (re-parented away from it) holds the
    port: the new start says so, with the pid to stop, instead of serving against it."""
    distribution = find_distribution()
    models = tmp_path / "models"
    models.mkdir(parents=True)
    grpc_port = free_port()
    command = [
        str(distribution.server_binary),
        f"--model-repository={models}",
        "--model-control-mode=explicit",
        f"--grpc-port={grpc_port}",
        f"--http-port={free_port()}",
        f"--metrics-port={free_port()}",
        "--grpc-address=127.0.0.1",
        "--http-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
    ]
    launcher = subprocess.run(  # the shell exits at once: the server it started is re-parented
        ["bash", "-c", 'setsid "$@" > /dev/null 2>&1 & echo $!', "launcher", *command],
        capture_output=True,
        text=True,
        env={**server_environment(distribution), STARTER_VARIABLE: "0"},  # its starter: a process long gone
        check=True,
    )
    orphan = int(launcher.stdout.strip())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and listener_pid(grpc_port) != orphan:
            time.sleep(0.2)
        options = ServerOptions(tmp_path, grpc_port=grpc_port, http_port=free_port(), metrics_port=free_port())
        with pytest.raises(ProdgenError, match=rf"held by an orphaned tritonserver \(pid {orphan}\).*kill {orphan}"):
            EmbeddedServer(options).start()
    finally:
        os.kill(orphan, signal.SIGKILL)
