"""`prodgen serve` starts the real server, reports readiness, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from prodgen.client import ProdgenClient
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


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_serve_reports_ready_and_leaves_no_process_behind(exported_repository: Path, stop_signal: int) -> None:
    grpc_port = free_port()
    command = [
        console_script("prodgen"),
        "serve",
        "--repository",
        str(exported_repository),
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 180
        line = ""
        while time.monotonic() < deadline and not line.startswith("ready"):
            line = process.stdout.readline()
            assert line or process.poll() is None, "prodgen serve exited before it was ready"
        assert line.startswith("ready: 3 models")
        with ProdgenClient(f"127.0.0.1:{grpc_port}") as client:
            assert client.health().ready
        server_tree = descendants(process.pid)
        assert server_tree, "tritonserver should run as a child of prodgen serve"
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
        time.sleep(0.5)
        assert [pid for pid in server_tree if alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
