"""A catalogue job from manifest to results table: plan the rows, run the engine, keep the journal."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prodgen.client.api import ProdgenClient
from prodgen.client.batch.execute import Outage
from prodgen.client.batch.journal import RESULT_FORMATS, Journal, results_path, write_results
from prodgen.client.batch.local_engine import run_local
from prodgen.client.batch.manifest import read_manifest
from prodgen.client.batch.planning import JobIdentity, plan
from prodgen.client.batch.records import BAD, DONE, FAILED, PENDING, RowResult, WorkItem
from prodgen.client.batch.tasks import batch_task
from prodgen.errors import ProdgenError
from prodgen.progress import ProgressBoard
from prodgen.triton_request import DEFAULT_URL

ENGINES = ("local", "ray")
Finished = Callable[[RowResult], None]


@dataclass(frozen=True)
class Connection:
    """How a worker reaches the servers: plain data, so Ray can ship it to its actors."""

    urls: tuple[str, ...] = ()
    dns: str | None = None
    timeout_s: float = 300.0

    def client(self) -> ProdgenClient:
        if self.dns is None and len(self.urls) <= 1:
            return ProdgenClient(self.urls[0] if self.urls else DEFAULT_URL, self.timeout_s)
        return ProdgenClient(timeout_s=self.timeout_s, urls=self.urls, dns=self.dns)


@dataclass(frozen=True)
class BatchJob:
    manifest: Path
    task: str
    model: str
    out: Path
    connection: Connection = field(default_factory=Connection)
    concurrency: int = 4
    engine: str = "local"
    ray_address: str | None = None
    retry_deadline_s: float = 60.0
    """How long rows wait for a server that went away before they are recorded as failed."""
    results: str = "csv"


@dataclass(frozen=True)
class BatchSummary:
    rows: int
    done: int
    reused: int
    """Rows done by an earlier run (their output unchanged): no call this time."""
    bad: int
    failed: int
    pending: int
    results: Path

    @property
    def unsuccessful(self) -> int:
        return self.bad + self.failed + self.pending

    def line(self) -> str:
        return (
            f"{self.rows} rows: {self.done} done ({self.reused} from an earlier run), {self.bad} bad, "
            f"{self.failed} failed (server away), {self.pending} not reached → {self.results}"
        )


def served_version(client: ProdgenClient, name: str) -> str:
    """The version of `name` the server runs now (the highest ready one): part of every output's key."""
    index = client._call("repository index", client._client.get_model_repository_index)
    versions = [entry.version for entry in index.models if entry.name == name and entry.state == "READY"]
    if not versions:
        raise ProdgenError(f"model '{name}' has no ready version at {client.url}")
    return max(versions, key=lambda version: (len(version), version))


def _check_job(job: BatchJob) -> None:
    if job.engine not in ENGINES:
        raise ProdgenError(f"--engine {job.engine}: expected one of {', '.join(ENGINES)}")
    if job.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise ProdgenError("--engine ray needs Ray, which is not installed; pip install 'prodgen[ray]'")
    if job.results not in RESULT_FORMATS:
        raise ProdgenError(f"--results {job.results}: expected one of {', '.join(RESULT_FORMATS)}")
    if job.concurrency < 1:
        raise ProdgenError(f"--concurrency {job.concurrency}: expected at least 1")
    if job.out.exists() and not job.out.is_dir():
        raise ProdgenError(f"--out {job.out} is a file; expected a folder for the outputs (created if missing)")


def _pending(identity: JobIdentity, row_id: str) -> RowResult:
    return RowResult(row_id, PENDING, identity.task.name, identity.model, identity.model_version)


def run_batch(job: BatchJob) -> BatchSummary:
    """Run `job`; rows done by an earlier run with the same key are not redone. Every row ends in
    the results table (done, bad, failed or pending); nothing is raised for a row's failure."""
    _check_job(job)
    task = batch_task(job.task)
    rows = read_manifest(job.manifest)
    with job.connection.client() as client:
        task.check_model(client, job.model)
        version = served_version(client, job.model)
        identity = JobIdentity(task, job.model, version, job.manifest.resolve().parent, job.out.resolve())
        job.out.mkdir(parents=True, exist_ok=True)
        with Journal(job.out) as journal:
            latest = journal.load()
            planned = plan(identity, rows, latest)
            items = [entry for entry in planned if isinstance(entry, WorkItem)]
            now: dict[str, RowResult] = {}
            reused = 0
            for entry in planned:
                if isinstance(entry, RowResult):
                    now[entry.id] = entry
                    if latest.get(entry.id) == entry:
                        reused += entry.status == DONE
                    else:
                        journal.append(entry)
                        latest[entry.id] = entry

            def finished(result: RowResult) -> None:
                journal.append(result)
                latest[result.id] = now[result.id] = result
                progress.advance()

            try:
                with ProgressBoard() as board, board.task(f"{task.name} {job.model}", len(items), "rows") as progress:
                    _run_engine(job, identity, client, items, finished)
            finally:
                table = [now.get(row.id) or _pending(identity, row.id) for row in rows]
                journal.compact(latest.values())
                path = write_results(results_path(job.out, job.results), table)
    counts = {status: sum(result.status == status for result in table) for status in (DONE, BAD, FAILED, PENDING)}
    return BatchSummary(len(rows), counts[DONE], reused, counts[BAD], counts[FAILED], counts[PENDING], path)


def _run_engine(
    job: BatchJob, identity: JobIdentity, client: ProdgenClient, items: list[WorkItem], finished: Finished
) -> None:
    if not items:
        return
    if job.engine == "ray":
        from prodgen.client.batch.ray_engine import run_ray

        run_ray(identity, job.connection, items, job.concurrency, job.retry_deadline_s, job.ray_address, finished)
    else:
        run_local(identity, client, items, job.concurrency, Outage(job.retry_deadline_s), finished)
