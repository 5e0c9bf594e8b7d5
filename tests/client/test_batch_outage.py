"""A server that goes away during `prodgen batch`: its rows wait for it within --retry-deadline, then fail, never lost.

The client reaches the real embedded server through a TCP forwarder the test can cut: as a
server that dies or a network that drops looks from the client, with Triton itself untouched.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prodgen.client.batch import BatchJob, run_batch
from prodgen.client.batch.job import Connection
from prodgen.client.batch.journal import read_results
from prodgen.client.images import write_image
from prodgen.photos import fit, photograph
from prodgen.serve.server import EmbeddedServer

pytestmark = pytest.mark.e2e

MODEL = "fast-neural-style"


class Forwarder:
    """Loopback TCP port → `target`; `cut()` closes the port and every connection, `mend()` opens it again."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def mend(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        if self._listener is not None:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone would not (Linux)
            self._listener.close()
        for each in sockets:
            try:
                each.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its other side
            each.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            return
        finally:
            for each in (source, sink):
                try:
                    each.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the other pump closed it first


@pytest.fixture
def forwarder(embedded_server: EmbeddedServer) -> Iterator[Forwarder]:
    forwarder = Forwarder(embedded_server.options.grpc_url)
    forwarder.mend()
    try:
        yield forwarder
    finally:
        forwarder.cut()


def _manifest(folder: Path, rows: int) -> Path:
    lines = ["id,image"]
    for index in range(rows):
        write_image(folder / f"p{index}.png", np.ascontiguousarray(fit(photograph("coffee")[index * 9 :], 40, 40)))
        lines.append(f"row-{index},p{index}.png")
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    return folder / "rows.csv"


def _cut_after(forwarder: Forwarder, out: Path, rows: int, back_after_s: float | None) -> threading.Thread:
    """Cut the forwarder once `rows` outputs exist; mend it `back_after_s` later (None: never)."""

    def run() -> None:
        while len(list(out.glob("row-*.png"))) < rows:
            time.sleep(0.005)
        forwarder.cut()
        if back_after_s is not None:
            time.sleep(back_after_s)
            forwarder.mend()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_rows_wait_for_a_server_that_comes_back_within_the_deadline(forwarder: Forwarder, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = BatchJob(
        _manifest(tmp_path, 24),
        "stylize",
        MODEL,
        out,
        Connection((forwarder.url,), timeout_s=10),
        2,
        retry_deadline_s=60,
    )
    cutter = _cut_after(forwarder, out, 6, back_after_s=2.0)
    summary = run_batch(job)
    cutter.join()
    assert (summary.done, summary.failed) == (24, 0)
    assert max(int(row["attempts"]) for row in read_results(summary.results)) >= 2  # some rows were retried


def test_rows_fail_once_the_deadline_passes_and_a_rerun_finishes_them(forwarder: Forwarder, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = BatchJob(
        _manifest(tmp_path, 24),
        "stylize",
        MODEL,
        out,
        Connection((forwarder.url,), timeout_s=10),
        2,
        retry_deadline_s=2.0,
    )
    cutter = _cut_after(forwarder, out, 6, back_after_s=None)
    summary = run_batch(job)
    cutter.join()
    table = read_results(summary.results)
    assert summary.failed > 0 and summary.done + summary.failed == 24
    failed = [row for row in table if row["status"] == "failed"]
    assert all("retry deadline (2 s)" in row["error"] for row in failed)

    forwarder.mend()
    again = run_batch(job)
    assert (again.done, again.failed, again.reused) == (24, 0, summary.done)
