"""Where the Triton server bundled in nvidia-pytriton lives, and how to run it from a venv.

nvidia-pytriton ships `tritonserver` 2.51 with only the python backend, plus one python
backend stub per Python minor version. The stub must match the running interpreter, and
two environment facts, both seen failing on a build machine, decide whether it works:

- the stub links `libpython3.X.so`; where the system's libpython differs from the
  interpreter's (a pyenv build beside Debian's), the interpreter's own `LIBDIR` must come
  first on `LD_LIBRARY_PATH` or the stub crashes at model load
  (`'_thread.RLock' object has no attribute '_recursion_count'`);
- the stub imports packages from the Python it finds on `PATH`, so this interpreter's
  `bin/` must come first, or it cannot import onnxruntime (`No module named 'onnxruntime'`).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from prodgen.errors import ProdgenError


@dataclass(frozen=True)
class TritonDistribution:
    server_binary: Path
    python_backend_dir: Path
    stub: Path
    caches_dir: Path
    libraries_dir: Path


def find_distribution() -> TritonDistribution:
    try:
        import pytriton
    except ImportError as error:
        raise ProdgenError("the embedded server needs nvidia-pytriton: pip install nvidia-pytriton") from error
    root = Path(pytriton.__file__).parent
    dist = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ProdgenError(f"nvidia-pytriton has no python backend stub for Python {version} (looked at {stub})")
    packaged_libs = root.parent / "nvidia_pytriton.libs"
    return TritonDistribution(
        server_binary=dist / "bin" / "tritonserver",
        python_backend_dir=dist / "backends" / "python",
        stub=stub,
        caches_dir=dist / "caches",
        libraries_dir=packaged_libs if packaged_libs.is_dir() else dist / "external_libs",
    )


def prepare_backends(distribution: TritonDistribution, workspace: Path) -> Path:
    """A backend directory whose python backend carries the stub for this interpreter."""
    backend = workspace / "backends" / "python"
    backend.mkdir(parents=True)
    for item in distribution.python_backend_dir.iterdir():
        if item.is_file():
            (backend / item.name).symlink_to(item)
    shutil.copy2(distribution.stub, backend / "triton_python_backend_stub")
    return backend.parent


def server_environment(distribution: TritonDistribution) -> dict[str, str]:
    env = dict(os.environ)
    interpreter_libdir = sysconfig.get_config_var("LIBDIR") or ""
    library_path = [interpreter_libdir, str(distribution.libraries_dir), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in library_path if p)
    env["PATH"] = ":".join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    # glibc gives freed memory back to the system: without this, concurrent oversize requests (c=4,
    # 8192² pictures) left tritonserver's heap at ~920 MiB for good; with it, back to ~50 MiB
    # (scripts/oversize_loop.py, measured). Buffers of 64 KiB and more get their own mappings.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    return env
