"""What `prodgen-bench peers` measures and how long; importable without the peers' packages."""

from __future__ import annotations

from dataclasses import dataclass

from prodgen.bench.peers.launch import PEERS
from prodgen.bench.served import ServedSettings
from prodgen.errors import ProdgenError

VARIANTS = ("int8", "openvino", "int8_openvino")
"""The CPU variants `prodgen-export --int8 --openvino` may publish, by name suffix."""


@dataclass(frozen=True)
class PeerSettings:
    peers: tuple[str, ...] = tuple(PEERS)
    concurrency: tuple[int, ...] = (1, 4, 8)
    size: int | None = None
    rounds: int = 2
    """Windows per server and concurrency, taken in turns with the other servers."""
    warmup_s: float = 3.0
    window_s: float = 15.0
    min_window_requests: int = 5
    max_window_s: float = 60.0
    timeout_s: float = 120.0
    max_batch_size: int = 8
    """prodgen's published max_batch_size, and the batching peers' largest batch."""
    max_abs_diff: int = 1
    rss_interval_s: float = 0.5
    seed: int = 0
    serve_threads: int | None = None
    """`prodgen serve --threads`; None runs it as a user does, with its default."""
    variant: str | None = None
    """prodgen serves `<model>_<variant>` (int8, openvino, int8_openvino), exported with `--int8`/`--openvino`
    and published only inside its fidelity gate; peers keep FP32 and are checked against prodgen's FP32 model."""

    def __post_init__(self) -> None:
        unknown = [name for name in self.peers if name not in PEERS]
        if unknown:
            raise ProdgenError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
        if not self.concurrency or min(self.concurrency) < 1:
            raise ProdgenError("--concurrency: give at least one level, each at least 1")
        if self.variant not in (None, *VARIANTS):
            raise ProdgenError(f"unknown variant {self.variant!r}; choose from {', '.join(VARIANTS)}")
        if self.rounds < 1:
            raise ProdgenError("--rounds must be at least 1")

    def window_settings(self, concurrency: int) -> ServedSettings:
        return ServedSettings(
            concurrency=(concurrency,),
            warmup_s=self.warmup_s,
            window_s=self.window_s,
            min_window_requests=self.min_window_requests,
            max_window_s=max(self.max_window_s, self.window_s),
            stable_windows=1,
            max_windows=1,
            timeout_s=self.timeout_s,
        )
