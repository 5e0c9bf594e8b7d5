"""`make demo`'s script: a port it was told to use that is taken stops it at once, in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_a_taken_port_stops_the_demo_at_once_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=ROOT,
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                 "GRPC_PORT": str(port), "OUT": str(tmp_path / "out")},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"demo: port {port} is taken (GRPC_PORT={port} needs {port - 1}..{port + 1} free); "
        "pick another GRPC_PORT or leave it unset for free ports"
    ]
    assert not (tmp_path / "out").exists()
