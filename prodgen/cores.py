"""The CPU cores this process may use, for sizing compute thread pools (ONNX Runtime, PyTorch)."""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Cores that GEMM threads should use: distinct (package, core) pairs this process may run on."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return available
    cores: set[tuple[str, str]] = set()
    package = core = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
            cores.add((package, core))
    return max(1, min(available, len(cores) or available))
