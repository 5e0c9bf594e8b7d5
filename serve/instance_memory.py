"""The shared memory each python-backend model instance holds, to give back what an oversize request grew.

The bundled tritonserver 2.51 puts no bound on a request's size before a model sees it: its gRPC
endpoint takes messages up to 2 GiB (this release has no option to lower that; its options are
listed by `tritonserver --help`), the model's `dims` can only be fixed sides or -1 (any), and the
rate limiter counts executions, not bytes. The python backend then copies every input into the
instance's shared-memory region (`/dev/shm/<shm-region-prefix-name><model>_<instance>…`, the name
is the stub's second argument), which grows to fit in `shm-growth-byte-size` steps and never
shrinks while the instance lives; tritonserver maps the same pages. So one 8192² picture the model
refuses at once still leaves its ~200 MB in /dev/shm and in tritonserver's resident memory until
the instance ends (measured: 2.4 GB of /dev/shm after a battery of oversize requests).

What can be done at this depth is to end such an instance: the server's supervisor reloads a
model one of whose instances holds more than a bound (`ServerOptions.shm_release_bytes`), and
Triton's reload brings up new instances before it ends the old ones, so no request is dropped.
"""

from __future__ import annotations

from pathlib import Path

from prodgen.serve.processes import STUB_BINARY, children

SHM_ROOT = Path("/dev/shm")


def region_bytes(stub_argv: tuple[str, ...], root: Path = SHM_ROOT) -> int:
    """The size of the shared-memory region a stub started with `stub_argv` uses (0 if not found)."""
    if len(stub_argv) < 3:
        return 0
    try:
        return (root / stub_argv[2].lstrip("/")).stat().st_size
    except OSError:
        return 0


def instance_regions(server_pid: int, mirror: Path, root: Path = SHM_ROOT) -> dict[int, tuple[str, int]]:
    """Each running python-backend stub of the server: its model's name and its region's size in bytes."""
    regions: dict[int, tuple[str, int]] = {}
    for child in children(server_pid):
        if not child.running or len(child.argv) < 3 or not child.argv[0].endswith(STUB_BINARY):
            continue
        script = Path(child.argv[1])
        if script.parent.parent.parent == mirror:
            regions[child.pid] = (script.parent.parent.name, region_bytes(child.argv, root))
    return regions


def grown_instances(
    server_pid: int, mirror: Path, bound_bytes: int, root: Path = SHM_ROOT
) -> dict[int, tuple[str, int]]:
    """The stubs whose region holds more than `bound_bytes`, with their model's name and that size."""
    return {
        pid: (name, size)
        for pid, (name, size) in instance_regions(server_pid, mirror, root).items()
        if size > bound_bytes
    }
