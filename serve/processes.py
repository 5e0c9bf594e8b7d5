"""What the embedded server needs to know about processes, ports and shared memory on Linux.

Everything here reads /proc, so it works without extra packages and without privileges
for the processes of the same user.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_PR_SET_PDEATHSIG = 1
STUB_BINARY = "triton_python_backend_stub"


def port_in_use(host: str, port: int) -> bool:
    """True if something already listens on `host:port` (a socket in TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _tcp_rows(port: int) -> Iterator[list[str]]:
    """The fields of each /proc/net/tcp and tcp6 row whose local port is `port`
    (field 3: state, 0A listening, 01 established; 4: tx:rx queue bytes; 9: socket inode)."""
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                yield fields


def _listening_inodes(port: int) -> set[str]:
    return {fields[9] for fields in _tcp_rows(port) if fields[3] == "0A"}


def listener_pids(port: int) -> set[int]:
    """The pids of processes of this user listening on `port` (on any address)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found: set[int] = set()
    if not wanted:
        return found
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(str(fd.readlink()) in wanted for fd in (entry / "fd").iterdir()):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def listener_pid(port: int) -> int | None:
    """A pid listening on `port`, if one can be found."""
    return min(listener_pids(port), default=None)


def cpu_ticks(pid: int) -> int:
    """User + system CPU time process `pid` has used, in clock ticks (0 once it is gone)."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def unsent_bytes(port: int) -> int:
    """Bytes that connections to local `port` have sent but their peers have not acknowledged yet."""
    return sum(int(fields[4].split(":")[0], 16) for fields in _tcp_rows(port) if fields[3] == "01")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    parent: int
    state: str
    argv: tuple[str, ...]

    @property
    def running(self) -> bool:
        return self.state not in ("Z", "X")


def process_info(pid: int) -> ProcessInfo | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
        argv = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return ProcessInfo(pid, int(fields[1]), fields[0], tuple(a.decode(errors="replace") for a in argv if a))


def children(pid: int) -> list[ProcessInfo]:
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            info = process_info(int(entry.name))
            if info is not None and info.parent == pid:
                found.append(info)
    return found


STARTER_VARIABLE = "PRODGEN_SERVE_STARTER_PID"
"""Set in tritonserver's environment to the pid of the process that started it."""


def is_orphaned_server(info: ProcessInfo) -> bool:
    """A tritonserver started by prodgen whose starter has gone (it was re-parented)."""
    if not info.argv or not info.argv[0].endswith("tritonserver"):
        return False
    try:
        environment = (_PROC / str(info.pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    prefix = f"{STARTER_VARIABLE}=".encode()
    starter = next((entry[len(prefix) :].decode() for entry in environment if entry.startswith(prefix)), None)
    return starter is not None and starter != str(info.parent)


_DIE_WITH_PARENT = (
    "import ctypes, os, sys; ctypes.CDLL(None).prctl({option}, {signal}, 0, 0, 0); "
    "os.getppid() == {parent} or sys.exit(1); os.execv(sys.argv[1], sys.argv[1:])"
)


def dying_with_this_process(command: list[str]) -> list[str]:
    """`command`, run so that it gets SIGTERM when the thread that starts it dies, even by SIGKILL.

    Without it, a `kill -9` of `prodgen serve` leaves tritonserver running and holding the ports.
    A short-lived interpreter sets the parent-death signal and then becomes the command (the
    setting survives exec). It is not done in a `preexec_fn`: forking a process that runs gRPC
    threads runs gRPC's fork handlers, which aborted the child (measured: "epoll_wait error: Bad
    file descriptor", exit -6)."""
    code = _DIE_WITH_PARENT.format(option=_PR_SET_PDEATHSIG, signal=int(signal.SIGTERM), parent=os.getpid())
    return [sys.executable, "-I", "-S", "-c", code, *command]


def remove_shared_memory(prefix: str, root: Path = Path("/dev/shm")) -> list[Path]:
    """Remove the shared-memory files whose names start with `prefix`; returns what was removed."""
    removed = []
    for path in root.glob(f"{prefix}*"):
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (shared-memory pages it touched included), 0 once it is gone."""
    try:
        status = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
