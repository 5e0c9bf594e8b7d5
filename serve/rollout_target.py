"""Which replicas and repository a rollout acts on: options the `prodgen` command line builds
without importing gRPC (the rollout itself, in rollout.py, does)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prodgen.triton_request import DEFAULT_URL


@dataclass(frozen=True)
class RolloutTarget:
    repository: Path
    """The repository folder the explicit-mode servers load from."""
    model: str
    urls: tuple[str, ...] = (DEFAULT_URL,)
    """Every replica that serves the repository; the canary runs on the first."""
    timeout_s: float = 300.0
    """How long a load (and for TensorRT, the engine build it triggers) may take."""
    keep_history: int = 2
    """Version folders kept beyond the served ones, for `prodgen rollback`."""

    @property
    def model_dir(self) -> Path:
        return self.repository / self.model
