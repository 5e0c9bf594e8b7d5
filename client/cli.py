"""`prodgen generate|stylize|upscale|cutout|models|health`: a thin CLI over `prodgen.client.ProdgenClient`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from prodgen.cli_support import UrlOption, console
from prodgen.client.batch.cli import register_batch_command
from prodgen.client.diffusion_cli import register_diffusion_commands
from prodgen.client.outputs import picture_file, picture_files
from prodgen.errors import ProdgenError
from prodgen.progress import ProgressBoard
from prodgen.triton_request import DEFAULT_URL

if TYPE_CHECKING:
    from prodgen.client.api import ProdgenClient, ServedModel

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Serve prodgen models on Triton and call them over gRPC.",
)

Url = UrlOption
Model = Annotated[str, typer.Argument(metavar="MODEL", help="Served model name (prodgen models lists them).")]
Photos = Annotated[list[Path], typer.Argument(metavar="PHOTO", help="Product photos (PNG, JPEG, WebP, …).")]
Timeout = Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each call.")]


SharedMemory = Annotated[
    bool,
    typer.Option(
        "--shared-memory/--no-shared-memory",
        help="Pass pictures through Triton's system shared memory (server on this machine only).",
    ),
]


def _client(url: str, timeout: float, shared_memory: bool = False) -> ProdgenClient:
    """The gRPC client, imported when a command runs so that `prodgen --help` starts without it."""
    from prodgen.client.api import ProdgenClient

    return ProdgenClient(url, timeout, shared_memory=shared_memory)


@app.command()
def generate(
    model: Model,
    out: Annotated[Path, typer.Option(help="Picture file for the grid (.png, .jpg, …).")] = Path("generated.png"),
    seed: Annotated[int, typer.Option(min=0, help="Image i uses seed+i: the same picture on every server.")] = 0,
    count: Annotated[int, typer.Option(min=1, help="Number of pictures.")] = 16,
    class_id: Annotated[int | None, typer.Option(help="Product category, for conditional generators.")] = None,
    truncation: Annotated[float | None, typer.Option(help="Truncation ψ, for generators that take it.")] = None,
    columns: Annotated[int | None, typer.Option(min=1, help="Grid width in pictures.")] = None,
    url: Url = DEFAULT_URL,
    timeout: Timeout = 120.0,
) -> None:
    """Draw pictures from a generator and save them as one grid."""
    from prodgen.client.images import image_grid, write_image

    picture_file(out)
    with _client(url, timeout) as client, ProgressBoard() as board:
        with board.task(f"generate {model}", count, "pictures") as task:
            images = client.generate(
                model, seed=seed, count=count, class_id=class_id, truncation=truncation, progress=task.update
            )
    write_image(out, image_grid(images, columns))
    console().print(f"{count} pictures from {model} (seeds {seed}..{seed + count - 1}) → {out}")


@app.command()
def stylize(
    model: Model,
    images: Photos,
    out: Annotated[Path, typer.Option(help="Folder for the restyled pictures.")] = Path("stylized"),
    style: Annotated[Path | None, typer.Option(help="Style picture, for arbitrary-style models (AdaIN).")] = None,
    alpha: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Style strength, for AdaIN.")] = None,
    url: Url = DEFAULT_URL,
    timeout: Timeout = 120.0,
    shared_memory: SharedMemory = False,
) -> None:
    """Restyle product photos; writes OUT/<name>.png for each (OUT/<folder>-<name>.png where names repeat)."""
    from prodgen.client.images import read_image, write_image

    targets = picture_files(images, out)
    photos = [(path, read_image(path)) for path in images]
    style_image = read_image(style) if style is not None else None
    with _client(url, timeout, shared_memory) as client, ProgressBoard() as board:
        with board.task(f"stylize {model}", len(photos), "photos") as task:
            for (path, photo), target in zip(photos, targets, strict=True):
                write_image(target, client.stylize(model, photo, style=style_image, alpha=alpha))
                console().print(f"{path} → {target}")
                task.advance()


@app.command()
def upscale(
    model: Model,
    images: Photos,
    out: Annotated[Path, typer.Option(help="Folder for the upscaled pictures.")] = Path("upscaled"),
    tile: Annotated[int | None, typer.Option(min=16, help="Tile side for images beyond the model's bounds.")] = None,
    overlap: Annotated[int, typer.Option(min=0, help="Pixels neighbouring tiles share.")] = 32,
    url: Url = DEFAULT_URL,
    timeout: Timeout = 300.0,
    shared_memory: SharedMemory = False,
) -> None:
    """Upscale product photos of any size (large ones go in blended tiles); writes OUT/<name>.png for each."""
    from prodgen.client.images import read_image, write_image

    targets = picture_files(images, out)
    photos = [(path, read_image(path)) for path in images]
    with _client(url, timeout, shared_memory) as client, ProgressBoard() as board:
        with board.task(f"upscale {model}", len(photos), "photos") as overall:
            for (path, photo), target in zip(photos, targets, strict=True):
                with board.task(f"{path.name} {photo.shape[1]}×{photo.shape[0]}", None, "tiles") as tiles:
                    result = client.upscale(model, photo, tile=tile, overlap=overlap, progress=tiles.update)
                write_image(target, result)
                console().print(
                    f"{path} {photo.shape[1]}×{photo.shape[0]} → {target} {result.shape[1]}×{result.shape[0]}"
                )
                overall.advance()


@app.command()
def cutout(
    model: Model,
    images: Photos,
    out: Annotated[Path, typer.Option(help="Folder for the RGBA cutouts.")] = Path("cutouts"),
    force: Annotated[bool, typer.Option("--force", help="Write cutouts whose matte the check reports, too.")] = False,
    url: Url = DEFAULT_URL,
    timeout: Timeout = 120.0,
    shared_memory: SharedMemory = False,
) -> None:
    """Cut the product out of photos; writes OUT/<name>.png for each: the photo's RGB with its matte as alpha.

    Each matte is checked first: a product covering under 1 % or over 95 % of the photo, or touching
    the frame on two or more sides, is reported in a warning line and its cutout not written (exit
    status 1) unless --force."""
    import numpy as np

    from prodgen.client.images import read_image, write_image
    from prodgen.matte_checks import check_matte, coverage

    targets = picture_files(images, out)
    photos = [(path, read_image(path)) for path in images]
    held_back: list[Path] = []
    with _client(url, timeout, shared_memory) as client, ProgressBoard() as board:
        with board.task(f"cutout {model}", len(photos), "photos") as task:
            for (path, photo), target in zip(photos, targets, strict=True):
                (matte,) = client.cutout(model, [photo])
                problems = check_matte(matte)
                if problems:
                    console().print(f"warning: {path}: {'; '.join(problems)}")
                if problems and not force:
                    held_back.append(path)
                else:
                    write_image(target, np.dstack([photo, matte]))
                    console().print(f"{path} → {target} (product: {coverage(matte):.1%} of the photo)")
                task.advance()
    if held_back:
        console().print(
            f"{len(held_back)} of {len(photos)} cutouts not written (their mattes are reported above); "
            "--force writes them anyway"
        )
        raise typer.Exit(1)


register_diffusion_commands(app)
register_batch_command(app)


def _model_entry(model: ServedModel) -> dict[str, object]:
    return {
        "name": model.name,
        "task": model.task,
        "zoo_model": model.zoo_model,
        "inputs": [asdict(spec) for spec in model.inputs],
        "outputs": [asdict(spec) for spec in model.outputs],
        "max_batch_size": model.max_batch_size,
        "bounds": asdict(model.bounds) if model.bounds else None,
        **({"diffusion": asdict(model.facts.diffusion)} if model.facts.diffusion else {}),
        "family": model.facts.diffusion.family if model.facts.diffusion else None,
    }


@app.command()
def models(
    url: Url = DEFAULT_URL,
    timeout: Timeout = 10.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the models as JSON (the keys of prodgen-export --list --json).")
    ] = False,
) -> None:
    """List the served models with their task, inputs, outputs, max batch and image sides."""
    out = console()
    with _client(url, timeout) as client:
        served = client.models()
        if json_out:
            print(json.dumps([_model_entry(model) for model in served], indent=1, ensure_ascii=False))
            return
        for model in served:
            describe = ", ".join
            inputs = describe(f"{s.name} {s.dtype}{list(s.dims)}" for s in model.inputs)
            outputs = describe(f"{s.name} {s.dtype}{list(s.dims)}" for s in model.outputs)
            sides = f"; image sides {model.bounds.min_side}..{model.bounds.max_side}" if model.bounds else ""
            out.print(
                f"{model.name} ({model.task or 'unknown task'}): in {inputs}; out {outputs}; "
                f"max batch {model.max_batch_size}{sides}{_diffusion_facts(model)}",
                soft_wrap=True,
            )


def _diffusion_facts(model: ServedModel) -> str:
    """What a diffusion pipeline's user needs before the first prompt: family, schedulers, LoRAs, trained
    size, words, defaults."""
    facts = model.facts.diffusion
    if facts is None:
        return ""
    parts = [f"{facts.family or 'latent'} diffusion", f"schedulers {facts.schedulers}"]
    if facts.loras:
        parts.append(f"LoRAs {facts.loras}")
    if model.bounds is not None:
        parts.append(f"trained at {model.bounds.opt_side}×{model.bounds.opt_side}")
    if facts.known_words:
        words = facts.known_words.split(",")
        parts.append(f"knows {len(words)} words: {' '.join(words)}")
    elif facts.vocabulary_size:
        parts.append(f"vocabulary {facts.vocabulary_size} tokens")
    parts.append(f"prompt up to {facts.prompt_max_tokens} tokens")
    if facts.default_steps is not None:
        parts.append(
            f"defaults {facts.default_steps} steps, guidance {facts.default_guidance:g}, {facts.default_scheduler}"
        )
    return "; " + "; ".join(parts)


@app.command()
def health(
    url: Url = DEFAULT_URL,
    timeout: Timeout = 10.0,
    wait: Annotated[
        float, typer.Option(min=0.0, help="Seconds to keep asking while the server starts (0: ask once).")
    ] = 0.0,
) -> None:
    """Check that the server is live and ready, and which models are ready."""
    from prodgen.client.health_probe import probe_health  # grpc alone: an operator's loop runs this often

    deadline = time.monotonic() + wait
    while True:
        try:
            status = probe_health(url, timeout)
            if (status.live and status.ready) or time.monotonic() >= deadline:
                break
        except ProdgenError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.5)
    ready = [name for name, ok in status.models_ready.items() if ok]
    not_ready = [name for name, ok in status.models_ready.items() if not ok]
    console().print(
        f"{status.url}: Triton {status.server_version}, live={status.live}, ready={status.ready}; "
        f"models ready: {', '.join(ready) or 'none'}" + (f"; not ready: {', '.join(not_ready)}" if not_ready else "")
    )
    if not (status.live and status.ready):
        raise typer.Exit(1)
