"""Request payloads for a served model: real photographs and seeded latents, shaped by the
server's own model config.

Shapes, dtypes, fixed dims, image bounds, batch limits and the published facts (classes,
scalar defaults) come from the config the server reports, so a model renamed or re-batched
in production is benchmarked as it is served; the values come from `prodgen.zoo.samples`,
the same inputs export verification uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from prodgen.errors import ProdgenError
from prodgen.zoo.samples import sample_inputs

if TYPE_CHECKING:
    from prodgen.client.api import ServedModel

Payload = dict[str, np.ndarray]


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
    side = image_side(served, side)
    return [sample_inputs(served, batch, side, side, seed=variant * batch) for variant in range(variants)]
