"""Real inputs for a model: photographs for image inputs, seeded latents for generators.

Export verification, FP16 calibration, benchmarks and tests all draw from here, so each
judges a model on the same kind of data a shop sends. Inputs are filled by their kind
(`TensorSpec.kind`) and the model's published facts, so a zoo entry and a model read back
from a server's config get the same samples.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from prodgen.contract import ImageBounds, TensorSpec
from prodgen.model_facts import ModelFacts
from prodgen.photos import photo_batch
from prodgen.seeding import latents_from_seed


class TakesInputs(Protocol):
    """What sampling needs to know about a model: a `ZooModel` or a client's `ServedModel`."""

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def bounds(self) -> ImageBounds | None: ...

    @property
    def facts(self) -> ModelFacts: ...


def _sample(spec: TensorSpec, model: TakesInputs, batch: int, height: int, width: int, seed: int) -> np.ndarray:
    kind = spec.kind
    if kind == "image":
        fixed_h, fixed_w = spec.dims[0], spec.dims[1]
        offset = seed + model.inputs.index(spec)  # two image inputs (content, style) get different photos
        return photo_batch(batch, fixed_h if fixed_h > 0 else height, fixed_w if fixed_w > 0 else width, offset=offset)
    if kind == "scalar":
        return np.full((batch, 1), model.facts.input_default(spec.name), dtype=np.float32)
    if kind == "latent":
        (dim,) = spec.dims
        return latents_from_seed(seed, batch, dim)
    if kind == "class":
        classes = model.facts.num_classes or 1
        return ((np.arange(batch) + seed) % classes).astype(np.int64).reshape(batch, 1)
    raise ValueError(f"no sample rule for input {spec.name} ({spec.dtype} {spec.dims}, kind {kind})")


def sample_inputs(
    model: TakesInputs, batch: int, height: int | None = None, width: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """One batch of every input of `model`; image sides default to the model's tuned size."""
    opt = model.bounds.opt_side if model.bounds else 64
    height = height or opt
    width = width or height
    return {spec.name: _sample(spec, model, batch, height, width, seed) for spec in model.inputs}


def verification_cases(model: TakesInputs) -> list[dict[str, np.ndarray]]:
    """The cases an export is verified on: real photos at the tuned size, and an odd,
    non-square size that exercises dynamic H×W and in-graph padding; latents from seeds."""
    if model.bounds is None:
        return [sample_inputs(model, batch=4, seed=0), sample_inputs(model, batch=3, seed=100)]
    opt = model.bounds.opt_side
    odd_h = max(model.bounds.min_side, opt // 2 + 7)
    odd_w = min(model.bounds.max_side, opt + 6 if opt + 6 <= model.bounds.max_side else opt - 6)
    return [
        sample_inputs(model, batch=2, height=opt, width=opt, seed=0),
        sample_inputs(model, batch=1, height=odd_h, width=odd_w, seed=2),
    ]
