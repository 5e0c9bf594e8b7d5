"""What the three training scripts share: seeding, the progress bar, PSNR, and writing the
shipped checkpoint with its evaluation record."""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from safetensors.torch import save_file

WEIGHTS = Path(__file__).parent / "weights"
THREADS = 1
"""One thread: the same weights whatever the core count, and on a shared, oversubscribed
2-core machine a training step measured 12× faster than with two threads (whose OpenMP
workers wait on each other)."""


def seed_everything(seed: int) -> np.random.Generator:
    """Fixed seeds and a fixed thread count: the same steps on the same data give the same weights."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def training_steps(steps: int, description: str) -> Iterator[tuple[int, Progress, TaskID]]:
    """Yields (step, progress, task) under a rich progress bar; the caller may update the text."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns) as progress:
        task = progress.add_task(description, total=steps, status="")
        for step in range(steps):
            yield step, progress, task
            progress.advance(task)
            if not progress.console.is_terminal and (step + 1) % max(1, steps // 10) == 0:
                fields = progress.tasks[0].fields
                progress.console.print(f"{description}: step {step + 1}/{steps} {fields['status']}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def save_demo_weights(name: str, network: torch.nn.Module) -> Path:
    """Write `weights/<name>.safetensors`: the state_dict under the zoo's upstream keys, floats
    stored as fp16 to keep the demo small (a strict load casts them back to the network's fp32)."""
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    path = WEIGHTS / f"{name}.safetensors"
    state = {
        key: (value.detach().to(torch.float16) if value.is_floating_point() else value.detach()).contiguous()
        for key, value in network.state_dict().items()
    }
    save_file(state, str(path))
    return path


def _size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (a save_pretrained checkpoint)."""
    return (
        sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.is_dir() else path.stat().st_size
    )


def write_record(name: str, record: dict[str, object], train_seconds: float) -> Path:
    """`weights/<name>.json` beside `weights/<name>.safetensors` or the folder `weights/<name>/`: evaluation numbers, seed, steps, data, and the time and machine."""
    record = {
        **record,
        "train_seconds": round(train_seconds, 1),
        "threads": THREADS,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "weights_bytes": _size(WEIGHTS / name) if (WEIGHTS / name).is_dir() else _size(WEIGHTS / f"{name}.safetensors"),
    }
    path = WEIGHTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
