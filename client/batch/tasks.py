"""What each catalogue task calls: one entry per task, naming what a row must give and the client call.

A task takes a picture (an RGB photo; for restage a photo or an RGBA cutout) or none (txt2img), maybe a
prompt and a seed, and the per-row overrides it lists; its `run` is one `ProdgenClient` call
that returns the output picture. Adding a task is adding an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from prodgen.client.api import check_task
from prodgen.client.diffusion import Sampling
from prodgen.errors import ProdgenError
from prodgen.suggest import did_you_mean

if TYPE_CHECKING:
    from prodgen.client.api import ProdgenClient

PARAM_TYPES: dict[str, type] = {
    "steps": int,
    "guidance": float,
    "strength": float,
    "scheduler": str,
    "negative_prompt": str,
    "alpha": float,
    "tile": int,
    "overlap": int,
    "height": int,
    "width": int,
    "cutout_model": str,
}
"""Override columns a manifest may carry, and the type each is read as."""


@dataclass(frozen=True)
class RowInputs:
    """What a row gives a task besides its picture."""

    prompt: str | None = None
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def sampling(self) -> Sampling:
        return Sampling(
            seed=self.seed or 0,
            steps=self.params.get("steps"),
            guidance=self.params.get("guidance"),
            scheduler=self.params.get("scheduler"),
            negative_prompt=self.params.get("negative_prompt", ""),
        )


Run = Callable[["ProdgenClient", str, "np.ndarray | None", RowInputs], np.ndarray]


@dataclass(frozen=True)
class BatchTask:
    name: str
    picture: str | None
    """'RGB' (a photo), 'photo' (RGB, or RGBA where the file has transparency: a product cutout) or None
    (the task takes no picture)."""
    prompt: bool
    seeded: bool
    params: tuple[str, ...]
    run: Run
    model_task: str | None
    """The task the served model must publish (diffusion tasks share 'diffusion'); None: the call checks."""

    def check_model(self, client: ProdgenClient, name: str) -> None:
        """Refuse, before any row, a model of another task or a client that lacks the call."""
        if self.name == "cutout" and getattr(client, "cutout", None) is None:
            raise ProdgenError(
                "task cutout: this prodgen client has no cutout call (ProdgenClient.cutout); update prodgen"
            )
        model = client.model(name)
        if self.model_task is None:
            return
        if self.model_task in ("upscale", "stylize"):
            check_task(model, self.model_task)
        elif model.task != self.model_task:
            raise ProdgenError(
                f"task {self.name}: model '{name}' is of task '{model.task}', expected a {self.model_task} model"
            )


def _picture(picture: np.ndarray | None) -> np.ndarray:
    assert picture is not None  # planning gives every picture task its picture
    return picture


def _prompt(inputs: RowInputs) -> str:
    assert inputs.prompt is not None  # planning refuses a row without one
    return inputs.prompt


def _upscale(client: ProdgenClient, name: str, picture: np.ndarray | None, inputs: RowInputs) -> np.ndarray:
    return client.upscale(
        name, _picture(picture), tile=inputs.params.get("tile"), overlap=inputs.params.get("overlap", 32)
    )


def _stylize(client: ProdgenClient, name: str, picture: np.ndarray | None, inputs: RowInputs) -> np.ndarray:
    return client.stylize(name, _picture(picture), alpha=inputs.params.get("alpha"))


def _cutout(client: ProdgenClient, name: str, picture: np.ndarray | None, inputs: RowInputs) -> np.ndarray:
    cutout = getattr(client, "cutout", None)
    if cutout is None:
        raise ProdgenError("task cutout: this prodgen client has no cutout call (ProdgenClient.cutout)")
    result: np.ndarray = cutout(name, _picture(picture))
    return result


def _restage(client: ProdgenClient, name: str, picture: np.ndarray | None, inputs: RowInputs) -> np.ndarray:
    restaged = client.restage(
        name, _prompt(inputs), _picture(picture), inputs.sampling(), cutout_model=inputs.params.get("cutout_model")
    )
    return restaged.images[0]


def _txt2img(client: ProdgenClient, name: str, picture: np.ndarray | None, inputs: RowInputs) -> np.ndarray:
    params = inputs.params
    return client.txt2img(name, _prompt(inputs), inputs.sampling(), params.get("height"), params.get("width"))[0]


def _img2img(client: ProdgenClient, name: str, picture: np.ndarray | None, inputs: RowInputs) -> np.ndarray:
    strength = inputs.params.get("strength")
    return client.img2img(name, _prompt(inputs), _picture(picture), strength, inputs.sampling())[0]


SAMPLER = ("steps", "guidance", "scheduler", "negative_prompt")

TASKS: dict[str, BatchTask] = {
    task.name: task
    for task in (
        BatchTask(
            "upscale", "RGB", prompt=False, seeded=False, params=("tile", "overlap"), run=_upscale, model_task="upscale"
        ),
        BatchTask("stylize", "RGB", prompt=False, seeded=False, params=("alpha",), run=_stylize, model_task="stylize"),
        BatchTask("cutout", "RGB", prompt=False, seeded=False, params=(), run=_cutout, model_task=None),
        BatchTask(
            "restage",
            "photo",
            prompt=True,
            seeded=True,
            params=(*SAMPLER, "cutout_model"),
            run=_restage,
            model_task="diffusion",
        ),
        BatchTask(
            "txt2img",
            None,
            prompt=True,
            seeded=True,
            params=(*SAMPLER, "height", "width"),
            run=_txt2img,
            model_task="diffusion",
        ),
        BatchTask(
            "img2img",
            "RGB",
            prompt=True,
            seeded=True,
            params=(*SAMPLER, "strength"),
            run=_img2img,
            model_task="diffusion",
        ),
    )
}


def batch_task(name: str) -> BatchTask:
    if name not in TASKS:
        raise ProdgenError(f"task '{name}': expected one of {', '.join(TASKS)}{did_you_mean(name, TASKS)}")
    return TASKS[name]
