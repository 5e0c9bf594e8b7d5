"""Peak memory of one measurement inside a process that runs several runtimes.

On Linux, writing 5 to /proc/self/clear_refs resets the process's high-water mark
(VmHWM), so the peak resident set of each runtime's measurement can be read on its
own without a subprocess per runtime. `increment_mb` is the peak over the resident
set just before the measurement started: the memory that runtime and batch needed on
top of what the process already held. On CUDA, the PyTorch allocator's peak is read too
(it sees PyTorch runtimes only; ONNX Runtime and TensorRT allocate outside it, so for
them the device's used memory at the end is reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class MemoryPeak:
    peak_rss_mb: float | None
    increment_mb: float | None
    device_peak_mb: float | None = None
    device_used_mb: float | None = None


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """`with PeakMemory() as peak: ...` then `peak.result`."""

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda
        self.result = MemoryPeak(None, None)
        self._baseline_kb: int | None = None
        self._resettable = False

    def __enter__(self) -> PeakMemory:
        self._resettable = _reset_high_water_mark()
        self._baseline_kb = _status_kb("VmRSS")
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        peak_kb = _status_kb("VmHWM") if self._resettable else None
        increment = (
            (peak_kb - self._baseline_kb) / 1024 if peak_kb is not None and self._baseline_kb is not None else None
        )
        device_peak = device_used = None
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            device_peak = torch.cuda.max_memory_allocated() / 2**20
            free, total = torch.cuda.mem_get_info()
            device_used = (total - free) / 2**20
        self.result = MemoryPeak(
            peak_rss_mb=peak_kb / 1024 if peak_kb is not None else None,
            increment_mb=increment,
            device_peak_mb=device_peak,
            device_used_mb=device_used,
        )
