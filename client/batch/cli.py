"""`prodgen batch`: a catalogue job from the command line (the CLI face of `prodgen.client.batch.run_batch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prodgen.cli_support import console, fail

EXIT_ROWS_FAILED = 1

BATCH_HELP = """Run a task over every row of a manifest (CSV, JSON lines or Parquet), writing OUT/<id>.png and OUT/results.csv.

Each row needs an `id`; `image` (path relative to the manifest, file:// or http(s):// URL), `prompt`, `seed`
and overrides (steps, guidance, strength, scheduler, negative_prompt, alpha, tile, overlap, height, width) are
read where the task takes them. A rerun does only what is missing or changed (new rows, changed pictures or
settings, a new model version, rows a crash left unfinished).

Exit status: 0 every row done; 1 some rows failed (the count is printed; each row's reason is in the results
table); 2 a usage error (manifest, options, model)."""


def batch(
    manifest: Annotated[Path, typer.Argument(metavar="MANIFEST", help="Table of rows: .csv, .jsonl or .parquet.")],
    task: Annotated[str, typer.Option(help="upscale, stylize, cutout, restage, txt2img or img2img.")],
    model: Annotated[str, typer.Option(help="Served model name (prodgen models lists them).")],
    out: Annotated[Path, typer.Option(help="Folder for the outputs, the results table and the job's journal.")],
    url: Annotated[
        list[str] | None, typer.Option(help="Triton gRPC endpoint host:port; repeat it for a fleet.")
    ] = None,
    dns: Annotated[str | None, typer.Option(help="host:port of a headless Service: one replica per address.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Rows in flight at once (Ray: calling actors).")] = 4,
    engine: Annotated[
        str, typer.Option(help="local (threads in this process) or ray (a Ray Data pipeline).")
    ] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: start a local Ray).")] = None,
    retry_deadline: Annotated[
        float, typer.Option(min=0.0, help="Seconds to keep retrying while the server is away before rows fail.")
    ] = 60.0,
    results: Annotated[str, typer.Option(help="Results table format: csv, jsonl or parquet.")] = "csv",
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each call.")] = 300.0,
) -> None:
    from prodgen.client.batch.job import BatchJob, Connection, run_batch

    job = BatchJob(
        manifest=manifest,
        task=task,
        model=model,
        out=out,
        connection=Connection(tuple(url or ()), dns, timeout),
        concurrency=concurrency,
        engine=engine,
        ray_address=ray_address,
        retry_deadline_s=retry_deadline,
        results=results,
    )
    summary = run_batch(job)
    console().print(summary.line())
    if summary.unsuccessful:
        fail(
            f"{summary.unsuccessful} of {summary.rows} rows failed ({summary.bad} bad, {summary.failed} server away, "
            f"{summary.pending} not reached); each row's reason is in {summary.results}",
            EXIT_ROWS_FAILED,
        )


def register_batch_command(app: typer.Typer) -> None:
    app.command(help=BATCH_HELP)(batch)
