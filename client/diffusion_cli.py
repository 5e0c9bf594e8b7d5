"""`prodgen txt2img|img2img|inpaint|restage`: the diffusion pipeline from the command line.

Each writes one picture file per picture, in the format its suffix names (.png, .jpg,
.webp): `--out` itself for one picture, `<stem>-<i><suffix>` beside it for
several (picture i used seed + i). What the model answers but likely not as hoped (a prompt
truncated by the server, words the model does not know, a size away from the one it was
trained at) is one `warning:` line each. A picture the server fitted to
the model's bounds (and answered at its own size) is reported as a `fitting:` line.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from prodgen.cli_support import UrlOption, console
from prodgen.triton_request import DEFAULT_URL

if TYPE_CHECKING:
    import numpy as np

    from prodgen.client.api import ProdgenClient
    from prodgen.client.diffusion import Sampling

Url = UrlOption
Timeout = Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each call.")]
Model = Annotated[str, typer.Argument(help="Served diffusion pipeline name.")]
Prompt = Annotated[str, typer.Argument(help="What the picture should show.")]
Out = Annotated[
    Path,
    typer.Option(
        help="Picture file, in the format its suffix names (.png, .jpg, .webp); "
        "with --count > 1, <stem>-<i><suffix> beside it."
    ),
]
Seed = Annotated[int, typer.Option(min=0, help="Picture i uses seed+i: the same picture on every server.")]
Steps = Annotated[int | None, typer.Option(min=1, help="Denoising steps (model default if omitted).")]
Guidance = Annotated[float | None, typer.Option(min=0.0, help="Classifier-free guidance scale.")]
Count = Annotated[int, typer.Option(min=1, help="Number of pictures.")]
Scheduler = Annotated[str | None, typer.Option(help="ddim, euler or dpmpp-2m (model default if omitted).")]
Negative = Annotated[str, typer.Option(help="What the picture should not show.")]
Strength = Annotated[float | None, typer.Option(min=0.0, max=1.0, help="How much of the picture is re-drawn.")]
Fit = Annotated[
    bool,
    typer.Option(
        "--fit/--no-fit",
        help="Fit a picture outside the model's bounds to them (answered at its own size); --no-fit refuses it.",
    ),
]


def _sampling(
    seed: int, count: int, steps: int | None, guidance: float | None, scheduler: str | None, negative: str
) -> Sampling:
    from prodgen.client.diffusion import Sampling

    return Sampling(seed, count, steps, guidance, scheduler, negative)


def _run(url: str, timeout: float, call: Callable[[ProdgenClient], np.ndarray], out: Path, what: str) -> None:
    from prodgen.client.api import ProdgenClient
    from prodgen.client.diffusion import DiffusionWarning, PictureFittedWarning
    from prodgen.client.images import write_image

    with warnings.catch_warnings(record=True) as caught, ProdgenClient(url, timeout) as client:
        warnings.simplefilter("always", DiffusionWarning)
        warnings.simplefilter("always", PictureFittedWarning)
        pictures = call(client)
    for warning in caught:
        if issubclass(warning.category, DiffusionWarning):
            console().print(f"warning: {warning.message}")
        elif issubclass(warning.category, PictureFittedWarning):
            console().print(f"fitting: {warning.message}")
    targets = (
        [out]
        if len(pictures) == 1
        else [out.with_name(f"{out.stem}-{index}{out.suffix or '.png'}") for index in range(len(pictures))]
    )
    for target, picture in zip(targets, pictures, strict=True):
        write_image(target, picture)
    console().print(f"{what} → {', '.join(str(target) for target in targets)}")


def register_diffusion_commands(app: typer.Typer) -> None:
    @app.command()
    def txt2img(
        model: Model,
        prompt: Prompt,
        out: Out = Path("txt2img.png"),
        seed: Seed = 0,
        steps: Steps = None,
        guidance: Guidance = None,
        count: Count = 1,
        scheduler: Scheduler = None,
        negative: Negative = "",
        height: Annotated[int | None, typer.Option(min=1, help="Picture height (model default if omitted).")] = None,
        width: Annotated[int | None, typer.Option(min=1, help="Picture width (model default if omitted).")] = None,
        url: Url = DEFAULT_URL,
        timeout: Timeout = 600.0,
    ) -> None:
        """Pictures from a prompt."""
        sampling = _sampling(seed, count, steps, guidance, scheduler, negative)
        _run(
            url,
            timeout,
            lambda client: client.txt2img(model, prompt, sampling, height, width),
            out,
            f"{count} from {model}",
        )

    @app.command()
    def img2img(
        model: Model,
        prompt: Prompt,
        image: Annotated[Path, typer.Argument(help="The picture to re-draw.")],
        out: Out = Path("img2img.png"),
        strength: Strength = None,
        seed: Seed = 0,
        steps: Steps = None,
        guidance: Guidance = None,
        count: Count = 1,
        scheduler: Scheduler = None,
        negative: Negative = "",
        fit: Fit = True,
        url: Url = DEFAULT_URL,
        timeout: Timeout = 600.0,
    ) -> None:
        """A picture re-drawn towards a prompt, answered at the picture's own size."""
        from prodgen.client.images import read_image

        picture = read_image(image)
        sampling = _sampling(seed, count, steps, guidance, scheduler, negative)
        _run(
            url,
            timeout,
            lambda client: client.img2img(model, prompt, picture, strength, sampling, fit),
            out,
            f"{image}",
        )

    @app.command()
    def inpaint(
        model: Model,
        prompt: Prompt,
        image: Annotated[Path, typer.Argument(help="The picture.")],
        mask: Annotated[Path, typer.Argument(help="Greyscale mask of its size: white is regenerated, black kept.")],
        out: Out = Path("inpaint.png"),
        strength: Strength = None,
        seed: Seed = 0,
        steps: Steps = None,
        guidance: Guidance = None,
        count: Count = 1,
        scheduler: Scheduler = None,
        negative: Negative = "",
        fit: Fit = True,
        url: Url = DEFAULT_URL,
        timeout: Timeout = 600.0,
    ) -> None:
        """A picture with its masked area regenerated from a prompt; the rest keeps its own pixels."""
        from prodgen.client.images import read_image, read_mask

        picture, area = read_image(image), read_mask(mask)
        sampling = _sampling(seed, count, steps, guidance, scheduler, negative)
        _run(
            url,
            timeout,
            lambda client: client.inpaint(model, prompt, picture, area, strength, sampling, fit),
            out,
            f"{image}",
        )

    @app.command()
    def restage(
        model: Model,
        prompt: Prompt,
        photo: Annotated[
            Path, typer.Argument(help="Product photo (with --cutout), or an RGBA cutout PNG whose alpha is used.")
        ],
        cutout: Annotated[
            str | None, typer.Option("--cutout", help="Served cutout model that finds the product in the photo.")
        ] = None,
        upscaler: Annotated[str | None, typer.Option(help="Served upscale model for the generated background.")] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Restage even when the matte check finds it suspicious.")
        ] = False,
        out: Out = Path("restage.png"),
        seed: Seed = 0,
        steps: Steps = None,
        guidance: Guidance = None,
        count: Count = 1,
        scheduler: Scheduler = None,
        negative: Negative = "",
        url: Url = DEFAULT_URL,
        timeout: Timeout = 600.0,
    ) -> None:
        """A product photo in a new scene at the photo's own size: the product's pixels kept, the background
        generated from a prompt, all on the server in one call."""
        from prodgen.client.images import read_photo

        picture = read_photo(photo)
        sampling = _sampling(seed, count, steps, guidance, scheduler, negative)

        def call(client: ProdgenClient) -> np.ndarray:
            result = client.restage(model, prompt, picture, sampling, cutout, upscaler, force)
            console().print(f"fitting: {result.fitting}")
            return result.images

        _run(url, timeout, call, out, f"{photo}")
