"""The peers of `prodgen-bench diffusion` as processes (bench/diffusion_peer.py), and their memory.

Each peer is a process of its own, so its resident memory is its own to read and it may run in
another Python environment (optimum-intel's OpenVINO pipeline brings numpy 2 and its own
diffusers: it runs under `--openvino-python`). A picture is asked for over the peer's stdin and
timed here, from the request to the saved picture, as the served one is timed from the client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prodgen.bench.peers.launch import tree_rss_mb
from prodgen.seeding import latent_from_seed

PEER_SCRIPT = Path(__file__).with_name("diffusion_peer.py")


@dataclass(frozen=True)
class PeerSettings:
    prompt: str
    side: int
    guidance: float
    scheduler: str
    threads: int
    latent_channels: int
    vae_scale_factor: int


class PeerError(RuntimeError):
    pass


class PeerProcess:
    """A peer started with `python` running `--runner runner`; `picture(seed, steps)` → (ms, picture)."""

    def __init__(self, label: str, python: str, runner: str, extra: list[str], settings: PeerSettings, work: Path):
        self.label = label
        self.settings = settings
        self.work = work
        command = [python, str(PEER_SCRIPT), "--runner", runner, *extra, "--prompt", settings.prompt]
        command += ["--side", str(settings.side), "--guidance", str(settings.guidance)]
        command += ["--scheduler", settings.scheduler, "--threads", str(settings.threads)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.pid = self.process.pid
        answer = self._answer()
        if "error" in answer:
            self.close()
            raise PeerError(f"{label}: {answer['error']}")

    def _answer(self) -> dict[str, object]:
        assert self.process.stdout is not None
        while line := self.process.stdout.readline():
            if line.startswith("{"):
                return dict(json.loads(line))
        raise PeerError(f"{self.label}: the peer process ended (exit {self.process.wait()})")

    def latents(self, seed: int) -> Path:
        factor = self.settings.vae_scale_factor
        shape = (1, self.settings.latent_channels, self.settings.side // factor, self.settings.side // factor)
        path = self.work / f"latents-{seed}-{self.settings.side}.npy"
        if not path.exists():
            np.save(path, latent_from_seed(seed, int(np.prod(shape))).reshape(shape))
        return path

    def picture(self, seed: int, steps: int) -> tuple[float, np.ndarray]:
        assert self.process.stdin is not None
        out = self.work / f"{self.label}-{seed}-{steps}.npy"
        request = {"seed": seed, "steps": steps, "latents": str(self.latents(seed)), "out": str(out)}
        began = time.perf_counter()
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self._answer()
        elapsed_ms = 1000 * (time.perf_counter() - began)
        if "error" in answer:
            raise PeerError(f"{self.label}: {answer['error']}")
        return elapsed_ms, np.load(out)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def prodgen_python() -> str:
    return sys.executable


@dataclass
class MemorySampler:
    """Largest resident memory (the process and its children, MB) seen for each watched pid."""

    interval_s: float = 0.5
    peaks: dict[str, float] = field(default_factory=dict)
    _watched: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, label: str, pid: int) -> None:
        self._watched[label] = pid

    def forget(self, label: str) -> None:
        self._watched.pop(label, None)

    def sample(self) -> dict[str, float]:
        now = {label: tree_rss_mb(pid) for label, pid in list(self._watched.items())}
        for label, rss in now.items():
            self.peaks[label] = max(self.peaks.get(label, 0.0), rss)
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
