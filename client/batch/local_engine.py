"""The default engine: a pool of threads in this process, each decoding a row and calling the server.

gRPC calls release the GIL, so `concurrency` threads keep that many requests in flight
(spread over a fleet's replicas by the fleet client); rows are handed out as threads free
up, so a large manifest's pictures are never all in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from prodgen.client.api import ProdgenClient
from prodgen.client.batch.execute import Outage, decode, infer_and_write
from prodgen.client.batch.planning import JobIdentity
from prodgen.client.batch.records import RowResult, WorkItem


def run_local(
    job: JobIdentity,
    client: ProdgenClient,
    items: Iterable[WorkItem],
    concurrency: int,
    outage: Outage,
    finished: Callable[[RowResult], None],
) -> None:
    """Run every item, `concurrency` at a time, telling `finished` each result as it comes (in this thread)."""

    def work(item: WorkItem) -> RowResult:
        return infer_and_write(job, client, decode(job, item), outage)

    pending: set[Future[RowResult]] = set()
    queue = iter(items)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="prodgen-batch") as pool:
        try:
            while True:
                while len(pending) < concurrency:
                    item = next(queue, None)
                    if item is None:
                        break
                    pending.add(pool.submit(work, item))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
