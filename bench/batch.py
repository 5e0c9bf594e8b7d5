"""`prodgen-bench batch`: a catalogue job's items per second against concurrency, one or two servers,
and the local engine against the Ray engine, measured side by side in one run.

Two embedded servers serve the same repository on free loopback ports. Every configuration
runs the same manifest (crops of the bundled photographs) into a fresh folder, so each run
does every row; configurations take turns within each round, so a busy spell of a shared
machine falls on all of them alike. A report folder gets report.json (every run) and report.md.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prodgen.client.batch import BatchJob, run_batch
from prodgen.client.batch.job import Connection
from prodgen.client.images import write_image
from prodgen.errors import ProdgenError
from prodgen.photos import PHOTO_NAMES, photograph
from prodgen.serve.server import EmbeddedServer, ServerOptions, free_port


@dataclass(frozen=True)
class Configuration:
    engine: str
    servers: int
    concurrency: int

    @property
    def label(self) -> str:
        return f"{self.engine}, {self.servers} server{'s' if self.servers > 1 else ''}, concurrency {self.concurrency}"


@dataclass(frozen=True)
class BatchRun:
    configuration: Configuration
    round: int
    rows: int
    seconds: float

    @property
    def items_per_s(self) -> float:
        return self.rows / self.seconds


def configurations(concurrency: tuple[int, ...], ray_concurrency: int | None) -> list[Configuration]:
    listed = [Configuration("local", 1, level) for level in concurrency]
    listed += [Configuration("local", 2, level) for level in concurrency if level > 1]
    if ray_concurrency is not None:
        listed += [Configuration("local", 1, ray_concurrency), Configuration("ray", 1, ray_concurrency)]
        listed += [Configuration("ray", 2, ray_concurrency)]
    return list(dict.fromkeys(listed))


def write_manifest(folder: Path, rows: int, side: int) -> Path:
    """`rows` different side×side crops of the bundled photographs, and a CSV naming them."""
    lines = ["id,image"]
    for index in range(rows):
        photo = photograph(PHOTO_NAMES[index % len(PHOTO_NAMES)])
        top, left = (index * 37) % (photo.shape[0] - side), (index * 53) % (photo.shape[1] - side)
        write_image(folder / f"p{index:04d}.png", np.ascontiguousarray(photo[top : top + side, left : left + side]))
        lines.append(f"item-{index:04d},p{index:04d}.png")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def measure(
    repository: Path,
    model: str,
    task: str,
    rows: int,
    side: int,
    rounds: int,
    listed: list[Configuration],
    say: Callable[[str], None],
) -> list[BatchRun]:
    """Run every configuration once per round, in turn; the time of each run from start to results table."""
    runs: list[BatchRun] = []
    scratch = Path(tempfile.mkdtemp(prefix="prodgen-bench-batch-"))
    servers = [
        EmbeddedServer(
            ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
        )
        for _ in range(2)
    ]
    ray_started = False
    try:
        for server in servers:
            server.start()
        if any(item.engine == "ray" for item in listed):
            import ray

            ray.init(include_dashboard=False, log_to_driver=False)
            ray_started = True
        manifest = write_manifest(scratch / "photos", rows, side)
        urls = [server.options.grpc_url for server in servers]
        warm = BatchJob(manifest, task, model, scratch / "warm", Connection((urls[0],)))
        run_batch(warm)
        run_batch(BatchJob(manifest, task, model, scratch / "warm2", Connection((urls[1],))))
        for number in range(rounds):
            for item in listed:
                out = scratch / "out"
                shutil.rmtree(out, ignore_errors=True)
                job = BatchJob(
                    manifest, task, model, out, Connection(tuple(urls[: item.servers])), item.concurrency, item.engine
                )
                started = time.perf_counter()
                summary = run_batch(job)
                seconds = time.perf_counter() - started
                if summary.done != rows:
                    raise ProdgenError(f"{item.label}: {summary.done} of {rows} rows done; see {summary.results}")
                runs.append(BatchRun(item, number, rows, seconds))
                say(f"round {number + 1}/{rounds} · {item.label}: {rows / seconds:.1f} items/s")
    finally:
        if ray_started:
            import ray

            ray.shutdown()
        for server in servers:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return runs


def report_markdown(runs: list[BatchRun], header: dict[str, object]) -> str:
    lines = [
        "# prodgen batch: items per second",
        "",
        *(f"- {key}: {value}" for key, value in header.items()),
        "",
        "| configuration | runs | items/s (median) | min | max |",
        "|---|---|---|---|---|",
    ]
    by_configuration: dict[Configuration, list[float]] = {}
    for run in runs:
        by_configuration.setdefault(run.configuration, []).append(run.items_per_s)
    for configuration, rates in by_configuration.items():
        lines.append(
            f"| {configuration.label} | {len(rates)} | {statistics.median(rates):.1f} | {min(rates):.1f} | {max(rates):.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_batch_report(out: Path, runs: list[BatchRun], header: dict[str, object]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    record = {
        **header,
        "load_average_at_end": list(os.getloadavg()),
        "runs": [
            {**asdict(run.configuration), "round": run.round, "rows": run.rows, "seconds": run.seconds} for run in runs
        ],
    }
    (out / "report.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "report.md").write_text(report_markdown(runs, header))
    return [out / "report.json", out / "report.md"]
