"""Catalogue jobs: a manifest of SKUs → one output picture per row and a results table, resumable.

    from prodgen.client.batch import BatchJob, run_batch
    summary = run_batch(BatchJob(Path("catalogue.csv"), "upscale", "upscaler-x2", Path("out")), urls=["localhost:8001"])

The parts, each its own module: the manifest's rows (`manifest`), where a row's picture comes
from (`sources`), what each task calls (`tasks`), what an output is keyed by and whether it is
already done (`planning`), one row's work from picture to written file (`execute`), the
append-only journal and the results table (`journal`), and the two engines that run the
rows: threads in this process (`local_engine`) or a Ray Data pipeline (`ray_engine`).
"""

from prodgen.client.batch.job import BatchJob, BatchSummary, run_batch

__all__ = ["BatchJob", "BatchSummary", "run_batch"]
