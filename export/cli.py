"""`prodgen-export`: a checkpoint in, a verified model version in a Triton repository out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from prodgen import zoo
from prodgen.cli_support import console, run_app
from prodgen.errors import ProdgenError
from prodgen.export.pipeline import ExportRequest, ExportResult, export_model
from prodgen.model_repository.config import BatchingOptions

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

DEFAULT_REPOSITORY = Path("models")


def _export_one(request: ExportRequest) -> ExportResult:
    out = console()
    if request.checkpoint is None:
        out.print(f"{request.served_name}: no --checkpoint given, using seeded random weights (seed {request.seed})")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=out, transient=True) as progress:
        task = progress.add_task(request.served_name, total=None)
        result = export_model(request, step=lambda what: progress.update(task, description=f"{request.served_name}: {what}"))
    out.print(f"{request.served_name}: parity ONNX Runtime vs PyTorch: {result.parity.describe()}")
    out.print(f"{request.served_name}: published version {result.published.version} at {result.published.version_dir}")
    return result


@app.command()
def export(
    model: Annotated[Optional[str], typer.Argument(help="Zoo model name (see --list).")] = None,
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="Trained weights (.pth/.pt/.safetensors); random weights if omitted.")
    ] = None,
    repository: Annotated[Path, typer.Option(help="Triton model repository to publish into.")] = DEFAULT_REPOSITORY,
    name: Annotated[Optional[str], typer.Option(help="Served model name; defaults to the zoo name.")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Triton max_batch_size.")] = 8,
    max_queue_delay_us: Annotated[int, typer.Option(min=0, help="Dynamic batching queue delay.")] = 100,
    instances: Annotated[int, typer.Option(min=1, help="Model instances per device.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for random weights when no checkpoint is given.")] = 0,
    all_models: Annotated[bool, typer.Option("--all", help="Export every zoo model.")] = False,
    list_models: Annotated[bool, typer.Option("--list", help="Print the zoo's model names and exit.")] = False,
) -> None:
    """Export a zoo model to ONNX, verify it against PyTorch on real photos, and publish it."""
    if list_models:
        for zoo_name in zoo.names():
            typer.echo(zoo_name)
        return
    if all_models == (model is not None):
        raise ProdgenError("give one MODEL or --all (prodgen-export --list shows the zoo)")
    if all_models and (checkpoint is not None or name is not None):
        raise ProdgenError("--checkpoint and --name apply to one model; drop them with --all")
    batching = BatchingOptions(max_batch, max_queue_delay_us, instances)
    chosen = zoo.names() if all_models else [model]
    for zoo_name in chosen:
        entry = zoo.get(zoo_name)
        _export_one(
            ExportRequest(
                model=entry,
                repository=repository,
                served_name=name or entry.name,
                checkpoint=checkpoint,
                seed=seed,
                batching=batching,
            )
        )


def main() -> None:
    run_app(app)
