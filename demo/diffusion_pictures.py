"""The diffusion part of `make demo`: pictures from shop captions through the served catalogue model.

    python -m demo.diffusion_pictures URL OUT [MODEL]

Writes, for the served text-to-picture model MODEL (default `catalogue-diffusion`):
`OUT/MODEL-<category>.png`, one grid per category (rows: the colours trained with it, columns:
studio, wooden table, beach); `OUT/MODEL-held-out.png`, the six (category, colour) pairs never
trained on, one row each; `OUT/MODEL-captions.txt`, the caption of every picture; and a
`prodgen restage` example: `OUT/MODEL-cutout.png`, a rendered product cut out of its picture,
and `OUT/MODEL-restage-<i>.png`, that product kept pixel for pixel on a background drawn from
a prompt. Sampler settings are the ones the model was evaluated with (its weights' JSON).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo.captioned_catalogue import (
    BACKGROUND_NAMES,
    CATEGORIES,
    Product,
    held_out_pairs,
    render_cutout,
    training_pairs,
)
from demo.common import WEIGHTS
from prodgen.client import ProdgenClient
from prodgen.client.images import image_grid, write_image

NAME = "catalogue-diffusion"

RESTAGED = Product(category=1, colour=0, background=0)
"""A red mug: the cutout the restage example keeps."""
RESTAGE_PROMPT = "red mug on the beach"
RESTAGE_COUNT = 3
ENLARGE = 3
"""The model draws 32² pictures; grids show each pixel as 3×3 so a person can look at them."""


@dataclass(frozen=True)
class Sampler:
    scheduler: str
    steps: int
    guidance: float

    @classmethod
    def evaluated(cls) -> Sampler:
        """The settings the shipped weights were evaluated with, from their record."""
        record = json.loads((WEIGHTS / f"{NAME}.json").read_text())["sampler"]
        return cls(record["scheduler"], int(record["steps"]), float(record["guidance"]))


def pictures(client: ProdgenClient, model: str, captions: list[str], sampler: Sampler) -> np.ndarray:
    """One picture per caption, picture i with seed i: rows of one request may carry their own
    prompts, so the client sends up to the model's max batch of captions per call."""
    rows = len(captions)

    def column(values: list[object], dtype: type) -> np.ndarray:
        return np.array(values, dtype=dtype).reshape(rows, 1)

    inputs = {
        "prompt": column([caption.encode() for caption in captions], np.object_),
        "negative_prompt": column([b""] * rows, np.object_),
        "seed": column(list(range(rows)), np.int64),
        "steps": column([sampler.steps] * rows, np.int64),
        "guidance": column([sampler.guidance] * rows, np.float32),
        "scheduler": column([sampler.scheduler.encode()] * rows, np.object_),
    }
    return client.infer(model, inputs)["image"]


def enlarged_grid(pictures: np.ndarray, columns: int) -> np.ndarray:
    return image_grid(pictures.repeat(ENLARGE, axis=1).repeat(ENLARGE, axis=2), columns=columns)


def write_grids(client: ProdgenClient, model: str, out: Path, sampler: Sampler) -> list[str]:
    """The per-category grids and the held-out grid; returns caption lines for the captions file."""
    lines = []
    backgrounds = range(len(BACKGROUND_NAMES))
    for index, category in enumerate(CATEGORIES):
        products = [Product(index, colour, b) for c, colour in training_pairs() if c == index for b in backgrounds]
        captions = [product.caption() for product in products]
        target = out / f"{model}-{category}.png"
        write_image(target, enlarged_grid(pictures(client, model, captions, sampler), len(backgrounds)))
        lines += [f"{target.name}: {', '.join(captions)}"]
    held_out = [Product(category, colour, b) for category, colour in held_out_pairs() for b in backgrounds]
    captions = [product.caption() for product in held_out]
    target = out / f"{model}-held-out.png"
    write_image(target, enlarged_grid(pictures(client, model, captions, sampler), len(backgrounds)))
    lines += [f"{target.name} (pairs never trained on): {', '.join(captions)}"]
    return lines


def write_restage(url: str, model: str, out: Path, sampler: Sampler) -> str:
    """A rendered product's cutout, then `prodgen restage` puts it on a background from a prompt."""
    cutout = write_image(out / f"{model}-cutout.png", render_cutout(RESTAGED, np.random.default_rng(0)))
    restaged = out / f"{model}-restage.png"
    command = [
        "prodgen", "restage", model, RESTAGE_PROMPT, str(cutout), "--out", str(restaged),
        "--count", str(RESTAGE_COUNT), "--steps", str(sampler.steps), "--guidance", str(sampler.guidance),
        "--scheduler", sampler.scheduler, "--url", url,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return f"{restaged.stem}-<i>.png: '{RESTAGE_PROMPT}' around {cutout.name}"


def main(url: str, out: Path, model: str = NAME) -> None:
    sampler = Sampler.evaluated()
    with ProdgenClient(url, timeout_s=600) as client:
        lines = write_grids(client, model, out, sampler)
    lines.append(write_restage(url, model, out, sampler))
    (out / f"{model}-captions.txt").write_text("\n".join(lines) + "\n")
    print(f"{model}: {len(CATEGORIES)} category grids, the held-out grid and a restage example in {out}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
