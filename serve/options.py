"""How the embedded server listens and runs: options a command line can build without
importing the server itself (and the gRPC and protobuf modules the server needs).
"""

from __future__ import annotations

import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from prodgen.errors import ProdgenError

LOOPBACK = "127.0.0.1"
MODEL_CONTROL_MODES = ("auto", "explicit")


DEFAULT_SHM_RELEASE_BYTES = 64 << 20
"""Above the largest request and answer of the demo and zoo models at their bounds' usual sizes, far
below what one oversize picture leaves (an 8192² one: ~200 MB)."""


def default_log_file(grpc_port: int) -> Path:
    return Path(tempfile.gettempdir()) / "prodgen-serve" / f"tritonserver-{grpc_port}.log"


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
    model_control: str = "auto"
    """"auto": poll the repository when poll_interval_s > 0, else load once. "explicit": load all
    models at start, then only what is asked through Triton's repository API (`prodgen deploy`);
    the python-backend mirror follows the repository every `mirror_follow_s` so a load finds it."""
    mirror_follow_s: float = 0.5
    log_file: Path | None = field(default=None, kw_only=True)
    """Where tritonserver's log and the supervisor's reports go (appended; kept after stop).
    None: `default_log_file(grpc_port)` in the system's temporary folder."""
    supervise_interval_s: float = field(default=0.5, kw_only=True)
    """How often dead model instances are looked for (0: not at all)."""
    drain_timeout_s: float = field(default=30.0, kw_only=True)
    """On stop, how long running batches may take to finish before the server is killed."""
    shm_release_bytes: int = field(default=DEFAULT_SHM_RELEASE_BYTES, kw_only=True)
    """A model instance whose shared-memory region grew past this (an oversize request it refused,
    or one unusually large answer) is replaced by a reload, so the memory goes back (0: never);
    see prodgen.serve.instance_memory."""
    stop_with_starter: bool = field(default=False, kw_only=True)
    """tritonserver gets SIGTERM when the thread that called `start()` ends, even by SIGKILL of
    the process (`prodgen serve` sets it). Leave it off when starting from a short-lived thread."""

    def __post_init__(self) -> None:
        if self.model_control not in MODEL_CONTROL_MODES:
            raise ProdgenError(f"model control '{self.model_control}' is not one of {', '.join(MODEL_CONTROL_MODES)}")

    @property
    def log_path(self) -> Path:
        return self.log_file or default_log_file(self.grpc_port)

    @property
    def grpc_url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"{host}:{self.grpc_port}"
