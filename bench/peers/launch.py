"""Start prodgen and its peers as real server processes on free loopback ports, wait until
each answers, measure their memory, and stop them.

Every server gets its own process group, so stopping it (SIGTERM, then SIGKILL after a
grace period) reaches what it started too: tritonserver and its python stubs, LitServe's
worker processes. Its output goes to a log file named in every error.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prodgen.errors import ProdgenError
from prodgen.serve.options import LOOPBACK, free_port

Protocol = Literal["triton", "http"]
""""triton": KServe v2 over gRPC (prodgen, PyTriton); "http": the JSON wire format of `wire.py`."""


@dataclass(frozen=True)
class Target:
    """A server under test: prodgen itself or one of its peers."""

    name: str
    description: str
    protocol: Protocol
    module: str | None
    """The peer's app module (run with `python -m`); None for prodgen, run as `prodgen serve`."""
    uses_onnx: bool = False


PRODGEN = Target(
    "prodgen", "`prodgen serve` on its published repository (embedded Triton, ONNX Runtime)", "triton", None
)
PEERS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("fastapi-torch", "FastAPI + uvicorn, eager PyTorch", "http", "prodgen.bench.peers.fastapi_torch"),
        Target(
            "fastapi-onnxruntime",
            "FastAPI + uvicorn, ONNX Runtime on the repository's model.onnx",
            "http",
            "prodgen.bench.peers.fastapi_onnxruntime",
            uses_onnx=True,
        ),
        Target(
            "pytriton-torch",
            "PyTriton Triton.bind, eager PyTorch, dynamic batching",
            "triton",
            "prodgen.bench.peers.pytriton_torch",
        ),
        Target("litserve-torch", "LitServe with batching, eager PyTorch", "http", "prodgen.bench.peers.litserve_torch"),
    )
}


@dataclass(frozen=True)
class ModelSource:
    """What every server runs: the zoo model, its weights, and prodgen's published repository."""

    model: str
    """The zoo model, and the name every peer serves it under (FP32, as prodgen's `model` is published)."""
    served_name: str
    """What prodgen is measured on: `model`, or a published CPU variant of it such as `<model>_int8_openvino`."""
    repository: Path
    onnx: Path
    checkpoint: tuple[Path, ...] = ()
    seed: int = 0
    max_batch_size: int = 8
    serve_threads: int | None = None
    """`prodgen serve --threads` (ONNX Runtime threads per model instance); None: its default."""


@dataclass
class RunningServer:
    target: Target
    process: subprocess.Popen[bytes]
    url: str
    """host:port of gRPC (triton) or the HTTP base URL (http)."""
    log: Path
    ports: tuple[int, ...] = field(default_factory=tuple)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pause(self) -> None:
        """Freeze the whole process tree (SIGSTOP), so that an idle server's own loops (LitServe's
        workers poll their queues: 16 % of a core here while idle) take no CPU from the one measured."""
        _signal_group(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        _signal_group(self.process.pid, signal.SIGCONT)

    def stop(self, grace_s: float = 30.0) -> None:
        self.resume()  # a frozen process would not act on SIGTERM
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.process.pid, signal.SIGKILL)  # stragglers of the group (workers, stubs)
        if self.process.poll() is None:
            self.process.wait(5)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


PACKAGES: dict[str, tuple[str, ...]] = {
    "fastapi-torch": ("fastapi", "uvicorn"),
    "fastapi-onnxruntime": ("fastapi", "uvicorn"),
    "pytriton-torch": ("pytriton",),
    "litserve-torch": ("litserve",),
}
"""The modules each peer imports beyond prodgen's own dependencies."""


def require_peer_packages(peers: tuple[str, ...]) -> None:
    """Fail before anything starts when a chosen peer's framework is not installed."""
    missing = sorted(
        {module for name in peers for module in PACKAGES[name] if importlib.util.find_spec(module) is None}
    )
    if missing:
        raise ProdgenError(
            f"the peers need {', '.join(missing)}, which are not installed: pip install 'prodgen[peers]'"
        )


def console_script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _command(target: Target, source: ModelSource, ports: tuple[int, ...]) -> list[str]:
    if target.module is None:
        grpc, http, metrics = ports
        return [
            console_script("prodgen"),
            "serve",
            "--repository",
            str(source.repository),
            "--grpc-port",
            str(grpc),
            "--http-port",
            str(http),
            "--metrics-port",
            str(metrics),
            "--poll-seconds",
            "0",
        ] + ([] if source.serve_threads is None else ["--threads", str(source.serve_threads)])
    command = [sys.executable, "-m", target.module, "--model", source.model, "--name", source.model]
    command += ["--port", str(ports[0]), "--seed", str(source.seed), "--max-batch-size", str(source.max_batch_size)]
    for path in source.checkpoint:
        command += ["--checkpoint", str(path)]
    if target.uses_onnx:
        command += ["--onnx", str(source.onnx)]
    if target.protocol == "triton":
        command += ["--http-port", str(ports[1]), "--metrics-port", str(ports[2])]
    return command


def _environment(target: Target) -> dict[str, str]:
    if target.protocol != "triton":
        return dict(os.environ)
    from prodgen.serve.triton_distribution import find_distribution, server_environment

    return server_environment(find_distribution())


def start_server(target: Target, source: ModelSource, logs: Path) -> RunningServer:
    """Start `target` on free loopback ports; returns at once (see `wait_ready`)."""
    ports = (free_port(), free_port(), free_port()) if target.protocol == "triton" else (free_port(),)
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{target.name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            _command(target, source, ports),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_environment(target),
            start_new_session=True,
        )
    url = f"{LOOPBACK}:{ports[0]}" if target.protocol == "triton" else f"http://{LOOPBACK}:{ports[0]}"
    return RunningServer(target, process, url, log, ports)


def _ready(server: RunningServer, model: str) -> bool:
    if server.target.protocol == "triton":
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(server.url)
        try:
            return bool(client.is_model_ready(model))
        except Exception:  # noqa: BLE001 - not listening yet
            return False
        finally:
            client.close()
    try:
        with urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_ready(server: RunningServer, model: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not _ready(server, model):
        if not server.alive():
            raise ProdgenError(
                f"{server.target.name} exited with {server.process.returncode} before it served {model}; "
                f"its log {server.log}:\n{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise ProdgenError(
                f"{server.target.name} did not serve {model} within {timeout_s:.0f} s; its log {server.log}"
            )
        time.sleep(0.5)


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    parents = _parents()
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a server and all its processes, added up (pages shared between them,
    such as the same libraries mapped in several processes, count once per process)."""
    return sum(_rss_kb(member) for member in process_tree(pid)) / 1024
