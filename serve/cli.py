"""`prodgen serve`: the embedded Triton server in the foreground until Ctrl-C or SIGTERM.

Ctrl-C and SIGTERM both drain first (new requests refused, running batches finish, then stop);
Ctrl-C exits with 130 as a shell expects of an interrupted command, SIGTERM with 0.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from prodgen.cli_support import GRPC_PORT_VARIABLE, HTTP_PORT_VARIABLE, METRICS_PORT_VARIABLE, console
from prodgen.errors import ProdgenError
from prodgen.model_repository.publish import DEFAULT_REPOSITORY
from prodgen.serve.options import ServerOptions

POLL_SECONDS = 5.0
"""A server run from the command line picks up what `prodgen-export` publishes while it runs;
a server embedded in a program (`ServerOptions`) loads once unless told to poll."""
EXIT_INTERRUPTED = 130


def serve(
    repository: Annotated[Path, typer.Option(help="Triton model repository to serve.")] = DEFAULT_REPOSITORY,
    host: Annotated[
        str, typer.Option(help="Address to listen on; loopback unless told otherwise.")
    ] = ServerOptions.host,
    grpc_port: Annotated[
        int, typer.Option(envvar=GRPC_PORT_VARIABLE, help="gRPC port (KServe v2).")
    ] = ServerOptions.grpc_port,
    http_port: Annotated[int, typer.Option(envvar=HTTP_PORT_VARIABLE, help="HTTP port.")] = ServerOptions.http_port,
    metrics_port: Annotated[
        int, typer.Option(envvar=METRICS_PORT_VARIABLE, help="Prometheus metrics port.")
    ] = ServerOptions.metrics_port,
    threads: Annotated[
        int,
        typer.Option(help="ONNX Runtime threads per model instance (0: one per physical core)."),
    ] = ServerOptions.intra_op_threads,
    poll_seconds: Annotated[
        float, typer.Option(min=0, help="Pick up newly published models and versions this often (0: load once).")
    ] = POLL_SECONDS,
    log_verbose: Annotated[int, typer.Option(help="tritonserver --log-verbose level.")] = ServerOptions.log_verbose,
    model_control: Annotated[
        str,
        typer.Option(
            help="auto: load at start and follow --poll-seconds; explicit: load at start, then only what "
            "`prodgen deploy`/`rollback` ask through Triton's repository API (production mode)."
        ),
    ] = ServerOptions.model_control,
    log_file: Annotated[
        Path | None,
        typer.Option(help="tritonserver's log and prodgen's reports, kept after stop [default: a file in /tmp]."),
    ] = None,
) -> None:
    """Serve a model repository on the Triton server bundled with nvidia-pytriton (CPU is fine)."""
    from prodgen.serve.server import EmbeddedServer  # not needed for `prodgen --help` or the client commands

    out = console()
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    options = ServerOptions(
        repository=repository,
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        intra_op_threads=threads,
        poll_interval_s=poll_seconds,
        log_verbose=log_verbose,
        model_control=model_control,
        log_file=log_file,
        stop_with_starter=True,
    )
    server = EmbeddedServer(options, report=lambda line: out.print(line, soft_wrap=True))
    try:
        with out.status(f"starting tritonserver on {repository} …"):
            server.start()
        assert server.mirror is not None
        for name, reason in server.mirror.skipped.items():
            out.print(f"not served here: {name} ({reason})")
        out.print(
            f"ready: {len(server.mirror.served)} models ({', '.join(server.mirror.served)}) — "
            f"gRPC {host}:{grpc_port}, HTTP {host}:{http_port}, metrics {host}:{metrics_port}; "
            f"log {server.log_path}; Ctrl-C stops",
            soft_wrap=True,
        )
        while not stop.wait(0.5):
            if not server.running():
                raise ProdgenError(f"tritonserver stopped unexpectedly; its log is {server.log_path}")
        out.print("draining: refusing new requests, finishing running batches …")
    finally:
        server.stop()
    out.print("stopped")
    if signal.SIGINT in received:
        raise typer.Exit(EXIT_INTERRUPTED)
