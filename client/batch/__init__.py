"""Catalogue jobs: a manifest of SKUs → one output picture per row and a results table, resumable.

    from prodgen.client.batch import BatchJob, Connection, run_batch
    job = BatchJob(Path("catalogue.csv"), "upscale", "upscaler-x2", Path("out"), Connection(("localhost:8001",)))
    summary = run_batch(job)   # summary.done, .bad, .failed; summary.results: the results table

The parts, each its own module: the manifest's rows (`manifest`), where a row's picture comes
from (`sources`), what each task calls (`tasks`), what an output is keyed by and whether it is
already done (`planning`), one row's work from picture to written file (`execute`), the
append-only journal and the results table (`journal`), and the two engines that run the
rows: threads in this process (`local_engine`) or a Ray Data pipeline (`ray_engine`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["BatchJob", "BatchSummary", "Connection", "run_batch"]

if TYPE_CHECKING:
    from prodgen.client.batch.job import BatchJob, BatchSummary, Connection, run_batch
else:

    def __getattr__(name: str) -> object:
        """The job's names load the gRPC client on first use, so `prodgen --help` (which registers
        `prodgen batch` from this package) starts without it."""
        if name in __all__:
            from prodgen.client.batch import job

            return getattr(job, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
