"""How the embedded server listens and runs: options a command line can build without
importing the server itself (and the gRPC and protobuf modules the server needs).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the kernel's pick), for servers started
    beside others: tests, benchmarks. Another process may take it before it is bound again."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ServerOptions:
    repository: Path
    host: str = LOOPBACK
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    intra_op_threads: int = 0
    poll_interval_s: float = 0.0
    """Re-read the repository this often and load new models and versions (0: never)."""
    startup_timeout_s: float = 180.0
    log_verbose: int = 0
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def grpc_url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"{host}:{self.grpc_port}"
