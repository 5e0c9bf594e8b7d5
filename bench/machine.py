"""The machine a report was measured on, and how busy other processes kept it meanwhile.

On a small shared machine another process holding one core can slow a 2-thread
PyTorch run fifty-fold (each parallel region waits for a descheduled thread), so every
direct measurement records the share of CPU time other processes used while it ran,
from /proc/stat minus this process's own CPU time.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from types import TracebackType

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError):
        pass
    return None


_PACKAGES = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "tritonclient",
    "nvidia-pytriton",
    "tensorrt",
    "openvino",
    "matplotlib",
)


def _versions() -> dict[str, str]:
    from importlib import metadata

    import prodgen

    found = {"python": sys.version.split()[0], "prodgen": prodgen.__version__}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if package in ("tensorrt", "matplotlib"):
                found[package] = "not installed"
    return found


def describe_machine() -> dict[str, object]:
    import torch

    from prodgen.bench.runtime import physical_cores

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "memory_gib": round(_memory_gib() or 0.0, 1),
        "gpu": gpu,
        "os": platform.platform(),
        "versions": _versions(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def scheduling_note() -> str | None:
    """Why a comparison with a server may favour the server here, or None.

    With Linux's autogroup scheduling on, the CPU is shared fairly among sessions first;
    `prodgen serve` starts tritonserver in a session of its own, so on a machine other users
    keep busy the server gets a whole session's share while a bench that shares its terminal's
    session splits one. Measured here on a 256×256 style network under load: the same ONNX
    Runtime call ran 150 ms faster in the server's stub than in the bench beside it; started
    with `setsid`, the bench got its own share and the difference vanished within noise."""
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None
    if not enabled or os.getsid(0) == os.getpid():
        return None
    return (
        "on a busy machine Linux gives the server a CPU share of its own while this bench shares one with your "
        "terminal, so the server may look faster than the direct runs; for a fair comparison start the bench as "
        "`setsid prodgen-bench ...` (runs it on its own share)"
    )


def _system_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def _own_jiffies() -> int:
    times = os.times()
    return round((times.user + times.system) * _CLOCK_TICKS)


class OtherProcessesLoad:
    """`with OtherProcessesLoad() as load: ...`; then `load.fraction`: the share of all CPUs'
    time that processes other than this one used meanwhile (None where /proc is missing)."""

    def __init__(self) -> None:
        self.fraction: float | None = None

    def __enter__(self) -> OtherProcessesLoad:
        try:
            self._start = (_system_jiffies(), _own_jiffies(), time.monotonic())
        except OSError:
            self._start = None  # type: ignore[assignment]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._start is None:
            return
        (busy0, total0), own0, _ = self._start
        (busy1, total1), own1 = _system_jiffies(), _own_jiffies()
        if total1 > total0:
            self.fraction = max(0.0, min(1.0, ((busy1 - busy0) - (own1 - own0)) / (total1 - total0)))
