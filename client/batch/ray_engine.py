"""`--engine ray`: the same job as a Ray Data pipeline, for when one machine's client is the bottleneck.

    work items ─► map_batches(decode)             CPU tasks: read + hash-check + decode pictures
               ─► map_batches(Caller, concurrency=N)  a pool of actors, each with its own
                                                  ProdgenClient to the Triton fleet: call, write
               ─► the driver's journal and results table (streamed, as rows finish)

Rows travel as JSON text and pictures as raw bytes with their shape, so nothing depends on
how Ray converts columns. Decoding, calling and writing are the local engine's own functions
(`prodgen.client.batch.execute`): the outputs are byte-identical and the results the same.
Ray is optional (`pip install 'prodgen[ray]'`); without `--ray-address` a local Ray starts
(or the one this process already started is used).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from prodgen.client.batch.execute import Decoded, Outage, decode, infer_and_write
from prodgen.client.batch.planning import JobIdentity
from prodgen.client.batch.records import RowResult, WorkItem
from prodgen.errors import ProdgenError

if TYPE_CHECKING:
    import pandas

    from prodgen.client.batch.job import Connection

ACTOR_CPUS = 0.25
"""CPUs reserved per calling actor: it waits on gRPC, so several share a core (decoding takes whole ones)."""


def _decode_batch(batch: pandas.DataFrame, job: JobIdentity) -> pandas.DataFrame:
    import pandas

    decoded = [decode(job, WorkItem.from_json(text)) for text in batch["item"]]
    return pandas.DataFrame(
        {
            "item": [entry.item.to_json() for entry in decoded],
            "pixels": [b"" if entry.picture is None else entry.picture.tobytes() for entry in decoded],
            "shape": [json.dumps(None if entry.picture is None else entry.picture.shape) for entry in decoded],
            "error": [entry.error for entry in decoded],
            "seconds": [entry.seconds for entry in decoded],
        }
    )


def _decoded(row: dict[str, Any]) -> Decoded:
    shape = json.loads(row["shape"])
    picture = None if shape is None else np.frombuffer(row["pixels"], dtype=np.uint8).reshape(shape).copy()
    return Decoded(WorkItem.from_json(row["item"]), picture, row["error"], float(row["seconds"]))


class Caller:
    """A Ray actor: one client to the servers, kept for the actor's life."""

    def __init__(self, job: JobIdentity, connection: Connection, retry_deadline_s: float) -> None:
        self.job = job
        self.client = connection.client()
        self.outage = Outage(retry_deadline_s)

    def __call__(self, batch: pandas.DataFrame) -> pandas.DataFrame:
        import pandas

        results = [
            infer_and_write(self.job, self.client, _decoded(row), self.outage) for row in batch.to_dict("records")
        ]
        return pandas.DataFrame({"result": [result.to_json() for result in results]})


def _start_ray(address: str | None) -> bool:
    """Connect to Ray (a local one when no address is given); True when this call started it."""
    try:
        import ray
    except ImportError as error:
        raise ProdgenError("--engine ray needs Ray, which is not installed; pip install 'prodgen[ray]'") from error
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except ConnectionError as error:
        raise ProdgenError(f"--ray-address {address}: cannot connect to a Ray cluster there ({error})") from error
    return True


def run_ray(
    job: JobIdentity,
    connection: Connection,
    items: list[WorkItem],
    concurrency: int,
    retry_deadline_s: float,
    address: str | None,
    finished: Callable[[RowResult], None],
) -> None:
    """Run `items` as a Ray Data pipeline with `concurrency` calling actors; `finished` hears each result."""
    started = _start_ray(address)
    import ray
    import ray.data

    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # prodgen's own progress counts the rows
        dataset = ray.data.from_items([{"item": item.to_json()} for item in items])
        results = dataset.map_batches(
            functools.partial(_decode_batch, job=job), batch_format="pandas", batch_size=1
        ).map_batches(
            Caller,
            fn_constructor_kwargs={"job": job, "connection": connection, "retry_deadline_s": retry_deadline_s},
            batch_format="pandas",
            batch_size=1,
            concurrency=concurrency,
            num_cpus=ACTOR_CPUS,
        )
        for row in results.iter_rows():
            finished(RowResult.from_json(row["result"]))
    finally:
        if started:
            ray.shutdown()
