"""What every runtime in direct mode offers: open once per model, prepare once per input shape.

Every runtime takes the uint8/FP32 batch from host memory and returns the served outputs
to host memory, as a server handling a request would; on a GPU the copies are part of
each measured call. A runtime that cannot run on this machine raises
`RuntimeUnavailable` with the reason and what to install, and the run goes on without it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from prodgen.cores import physical_cores as physical_cores  # where the runtimes have always found it
from prodgen.zoo.spec import ZooModel

Inputs = dict[str, np.ndarray]
Outputs = list[np.ndarray]


class RuntimeUnavailable(Exception):
    """This runtime cannot run here; the message says why and what would enable it."""


@dataclass(frozen=True)
class Workload:
    model: ZooModel
    module: nn.Module
    """The serving graph in FP32 on the CPU; runtimes that change it work on a copy."""
    onnx_path: Path
    device: str
    """"cpu" or "cuda"."""
    threads: int


@dataclass
class Prepared:
    run: Callable[[], Outputs]
    precision: str
    settings: dict[str, str] = field(default_factory=dict)
    """What the runtime chose or was set to, e.g. memory format, compile, threads."""
    device: str | None = None
    """Where the work ran when it differs from the workload's device (ONNX Runtime without its CUDA build)."""


class Runtime(ABC):
    name: str = ""
    description: str = ""

    def open(self, workload: Workload) -> None:
        """Check availability and do per-model work (sessions, copies); raise RuntimeUnavailable."""
        self.workload = workload

    @abstractmethod
    def prepare(self, inputs: Inputs) -> Prepared:
        """A callable that runs one batch of `inputs` end to end."""

    def close(self) -> None:  # noqa: B027 - optional: runtimes that hold nothing keep this
        """Release what `open` and `prepare` built."""
