"""Request payloads for a served model: real photographs and seeded latents, shaped by the
server's own model config.

Shapes, dtypes, fixed dims, image bounds and batch limits come from the config the server
reports, so a model renamed or re-batched in production is benchmarked as it is served;
the values come from `prodgen.zoo.samples`, the same inputs export verification uses.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from prodgen import zoo
from prodgen.errors import ProdgenError
from prodgen.zoo.samples import sample_inputs
from prodgen.zoo.spec import ZooModel

if TYPE_CHECKING:
    from prodgen.client.api import ServedModel

Payload = dict[str, np.ndarray]


def _not_buildable(*_: object) -> nn.Module:
    raise ProdgenError("this entry describes a served model for payloads only; it has no network")


def as_zoo_model(served: ServedModel) -> ZooModel:
    """A zoo entry with the served model's tensors, bounds and parameters.

    Models exported by prodgen name their zoo model in `prodgen.zoo_model`; others get an
    entry built from the config alone (enough for `sample_inputs`)."""
    extras = {key: value for key, value in served.parameters.items()}
    zoo_name = served.parameters.get("zoo_model")
    if zoo_name in zoo.names():
        base = zoo.get(zoo_name)
        return dataclasses.replace(
            base,
            inputs=served.inputs,
            outputs=served.outputs,
            bounds=served.bounds or base.bounds,
            extras={**base.extras, **extras},
        )
    task = served.task if served.task in ("generate", "stylize", "upscale") else "generate"
    return ZooModel(
        name=served.name,
        task=task,  # type: ignore[arg-type]
        summary="served model",
        upstream="unknown",
        build=_not_buildable,
        serving_graph=_not_buildable,
        inputs=served.inputs,
        outputs=served.outputs,
        bounds=served.bounds,
        extras=extras,
    )


def image_side(served: ServedModel, side: int | None) -> int | None:
    """The image side to send: the given one (checked against the served bounds) or the tuned one."""
    if not any(spec.is_image for spec in served.inputs):
        return None
    if served.bounds is None:
        fixed = next(spec.dims[0] for spec in served.inputs if spec.is_image)
        if fixed > 0:
            return fixed
        if side is None:
            raise ProdgenError(f"{served.name} declares no image bounds; give --size")
        return side
    if side is None:
        return served.bounds.opt_side
    served.bounds.check(f"--size {side}", side, side)
    return side


def request_payloads(served: ServedModel, batch: int, side: int | None, variants: int = 4) -> list[Payload]:
    """`variants` different requests of `batch` items each (different photos or latents)."""
    if batch < 1:
        raise ProdgenError("the request batch must be at least 1")
    if served.max_batch_size > 0 and batch > served.max_batch_size:
        raise ProdgenError(
            f"{served.name} takes at most {served.max_batch_size} items a request; --request-batch {batch} given"
        )
    model = as_zoo_model(served)
    side = image_side(served, side)
    return [sample_inputs(model, batch, side, side, seed=variant * batch) for variant in range(variants)]
