"""`prodgen-export --list`: what each zoo model does, takes and returns, for a person or (`--json`) a machine."""

from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console

from prodgen import zoo
from prodgen.contract import TensorSpec
from prodgen.model_repository.stable_diffusion import scheduler_names
from prodgen.terminal_table import print_table
from prodgen.zoo.spec import ZooModel

HEADERS = ("model", "task", "inputs", "output", "image sides")
"""The table's columns (tensors by name and shape); `--json` adds dtypes, each model's summary and upstream."""


DIFFUSION_LINE = (
    "latent diffusion (text to picture, background replacement; SD 1.x/2.x, LCM, TCD, Turbo-style): "
    "prodgen-export stable-diffusion --checkpoint DIR --name NAME [--lora FILE[:SCALE]]... [--variant fp16], "
    f"DIR a diffusers save_pretrained folder; schedulers {', '.join(scheduler_names())}, chosen per request"
)
"""The diffusion family is no zoo entry (its architecture comes with the checkpoint folder), so the listing names it."""


def _dims(spec: TensorSpec) -> str:
    """'H×W×3' for an image of any size, '64×64×3' for a fixed one, 'H×W×1' for a matte, '[100]' for a vector."""
    if spec.dtype == "UINT8" and len(spec.dims) == 3:
        height, width, channels = spec.dims
        return "×".join(("H" if height < 0 else str(height), "W" if width < 0 else str(width), str(channels)))
    return "[" + ", ".join("N" if d < 0 else str(d) for d in spec.dims) + "]"


def _tensors(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{spec.name} {_dims(spec)}" for spec in specs)


def _sides(model: ZooModel) -> str:
    if model.bounds is None:
        return "–"
    return f"{model.bounds.min_side}..{model.bounds.max_side} (tuned {model.bounds.opt_side})"


def zoo_rows() -> list[list[str]]:
    rows = []
    for name in zoo.names():
        model = zoo.get(name)
        rows.append([name, model.task, _tensors(model.inputs), _dims(model.outputs[0]), _sides(model)])
    return rows


def zoo_json() -> str:
    entries = []
    for name in zoo.names():
        model = zoo.get(name)
        entries.append(
            {
                "name": name,
                "task": model.task,
                "summary": model.summary,
                "upstream": model.upstream,
                "inputs": [asdict(spec) for spec in model.inputs],
                "outputs": [asdict(spec) for spec in model.outputs],
                "bounds": asdict(model.bounds) if model.bounds else None,
            }
        )
    return json.dumps(entries, indent=1, ensure_ascii=False)


def print_zoo(console: Console, as_json: bool) -> None:
    if as_json:
        print(zoo_json())
        return
    print_table(
        console,
        HEADERS,
        zoo_rows(),
        title="the zoo (prodgen-export MODEL --checkpoint FILE)",
        wrap=("inputs", "image sides"),
        left=HEADERS,
    )
    console.print(DIFFUSION_LINE, soft_wrap=True, highlight=False)
