"""Latent-diffusion requests: text → picture, picture → picture, inpainting and restaging.

One gRPC call to the pipeline model per up to max-batch pictures; the server runs the whole
denoising loop. Picture *i* of a request uses seed + *i*, so any picture can be reproduced
alone. Inputs are checked here first (prompt, sizes, mask) so a mistake costs one clear line,
not a round trip; the server checks the same things for clients that are not this one.

SDXL base → refiner hand-off is two calls: `txt2latents` on the base stops at `denoising_end`
and returns its latents; `refine` on the refiner continues from them at `denoising_start`
(the same fraction, steps and scheduler). `XlConditions` are SDXL's size/crop conditioning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from prodgen.contract import check_image_array
from prodgen.errors import ProdgenError

if TYPE_CHECKING:
    from prodgen.client.api import ProdgenClient, ServedModel
    from prodgen.model_facts import DiffusionFacts

OPAQUE = 255
KEEP, REPAINT = 0, 255
"""Mask values: 0 keeps a pixel, 255 regenerates it (diffusers' convention)."""
FILL_GREY = 128
"""What transparent cutout pixels are set to before encoding: the middle of the uint8 range."""


@dataclass(frozen=True)
class Sampling:
    """Per-request sampler settings; None takes the model's published default."""

    seed: int = 0
    count: int = 1
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    negative_prompt: str = ""


@dataclass(frozen=True)
class XlConditions:
    """SDXL's added conditions; None takes diffusers' default (the picture's own size, the model's scores)."""

    original_size: tuple[int, int] | None = None
    """(height, width) the picture is said to have been cropped from."""
    crop_top_left: tuple[int, int] = (0, 0)
    aesthetic_score: float | None = None
    """Refiner only (diffusers' default 6)."""
    negative_aesthetic_score: float | None = None
    """Refiner only (diffusers' default 2.5)."""

    def inputs(self, model: ServedModel) -> dict[str, np.ndarray]:
        if _facts(model).family == "sd":
            raise ProdgenError(f"model '{model.name}' is not an SDXL pipeline: size and crop conditions need SDXL")
        values: dict[str, np.ndarray] = {
            "crop_top": np.array([self.crop_top_left[0]], np.int64),
            "crop_left": np.array([self.crop_top_left[1]], np.int64),
        }
        if self.original_size is not None:
            values["original_height"] = np.array([self.original_size[0]], np.int64)
            values["original_width"] = np.array([self.original_size[1]], np.int64)
        for name, score in (
            ("aesthetic_score", self.aesthetic_score),
            ("negative_aesthetic_score", self.negative_aesthetic_score),
        ):
            if score is not None:
                values[name] = np.array([score], np.float32)
        return values


class PromptTruncatedWarning(UserWarning):
    """The prompt had more tokens than the text encoder reads; the rest was dropped."""


def _diffusion_model(client: ProdgenClient, name: str) -> ServedModel:
    model = client.model(name)
    if model.task != "diffusion" or model.facts.diffusion is None:
        raise ProdgenError(f"model '{name}' is not a diffusion pipeline (task: {model.task})")
    return model


def _facts(model: ServedModel) -> DiffusionFacts:
    assert model.facts.diffusion is not None  # checked by _diffusion_model
    return model.facts.diffusion


def _check_prompt(prompt: str) -> bytes:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ProdgenError("prompt: empty; describe the picture you want")
    encoded = prompt.encode("utf-8")
    if b"\x00" in encoded:
        raise ProdgenError("prompt: contains a NUL character")
    return encoded


def _check_side(model: ServedModel, label: str, side: int) -> None:
    multiple = model.facts.side_multiple
    bounds = model.bounds
    low, high = (bounds.min_side, bounds.max_side) if bounds else (1, 1 << 30)
    if not low <= side <= high or side % multiple:
        raise ProdgenError(
            f"{label} {side} pixels: model '{model.name}' takes multiples of {multiple} in {low}..{high}"
        )


def _check_picture(model: ServedModel, image: np.ndarray, label: str = "image") -> None:
    if image.ndim != 3:
        raise ProdgenError(f"{label}: shape {tuple(image.shape)} given, expected (height, width, 3)")
    check_image_array(label, image[np.newaxis])
    _check_side(model, f"{label} height", image.shape[0])
    _check_side(model, f"{label} width", image.shape[1])


def _check_mask(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A (H, W) or (H, W, 1) uint8 mask the size of `image`, as (H, W, 1)."""
    if mask.dtype != np.uint8:
        raise ProdgenError(f"mask: dtype {mask.dtype} given, expected uint8 (0 keep … 255 repaint)")
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape != image.shape[:2]:
        raise ProdgenError(
            f"mask: {mask.shape[1] if mask.ndim > 1 else '?'}×{mask.shape[0]} (shape {tuple(mask.shape)}) given, "
            f"expected the image's size {image.shape[1]}×{image.shape[0]}"
        )
    return mask[..., np.newaxis]


def _rows(value: object, count: int, dtype: type) -> np.ndarray:
    return np.full((count, 1), value, dtype=dtype)


def _request(
    client: ProdgenClient,
    name: str,
    prompt: str,
    sampling: Sampling | None,
    extra: dict[str, np.ndarray],
    output: str = "image",
) -> np.ndarray:
    model = _diffusion_model(client, name)
    encoded = _check_prompt(prompt)
    sampling = sampling or Sampling()
    count = sampling.count
    if count < 1:
        raise ProdgenError(f"count {count}: expected at least one picture")
    if sampling.seed < 0:
        raise ProdgenError(f"seed {sampling.seed}: expected a seed >= 0")
    facts = _facts(model)
    if sampling.steps is not None and not 1 <= sampling.steps <= facts.max_steps:
        raise ProdgenError(f"steps {sampling.steps}: expected 1..{facts.max_steps}")
    known = facts.schedulers.split(",")
    if sampling.scheduler is not None and sampling.scheduler not in known:
        raise ProdgenError(f"scheduler '{sampling.scheduler}': model '{name}' offers {', '.join(known)}")
    inputs = {
        "prompt": _rows(encoded, count, np.object_),
        "negative_prompt": _rows(sampling.negative_prompt.encode("utf-8"), count, np.object_),
        "seed": (sampling.seed + np.arange(count, dtype=np.int64)).reshape(count, 1),
    }
    if sampling.steps is not None:
        inputs["steps"] = _rows(sampling.steps, count, np.int64)
    if sampling.guidance is not None:
        inputs["guidance"] = _rows(sampling.guidance, count, np.float32)
    if sampling.scheduler is not None:
        inputs["scheduler"] = _rows(sampling.scheduler.encode("utf-8"), count, np.object_)
    for key, value in extra.items():
        if key == "latents":  # already one row per picture
            inputs[key] = value
            continue
        inputs[key] = (
            np.repeat(value[np.newaxis], count, axis=0) if value.ndim > 1 else _rows(value[0], count, value.dtype.type)
        )
    result = client.infer(name, inputs)
    dropped = int(result["truncated_tokens"].max())
    if dropped:
        length = facts.prompt_max_tokens
        warnings.warn(
            f"prompt: {dropped} tokens beyond the text encoder's {length} were dropped; shorten the prompt",
            PromptTruncatedWarning,
            stacklevel=3,
        )
    return result[output]


def _fraction(name: str, value: float) -> np.ndarray:
    if not 0.0 < value < 1.0:
        raise ProdgenError(f"{name} {value}: expected a fraction of the schedule, 0 < {name} < 1")
    return np.array([value], dtype=np.float32)


def _txt2img_inputs(
    client: ProdgenClient, name: str, height: int | None, width: int | None, conditions: XlConditions | None
) -> dict[str, np.ndarray]:
    model = _diffusion_model(client, name)
    if _facts(model).inpainting:
        raise ProdgenError(f"model '{name}' is an inpainting model: use inpaint or restage")
    extra = conditions.inputs(model) if conditions is not None else {}
    for label, side in (("height", height), ("width", width)):
        if side is not None:
            _check_side(model, label, side)
            extra[label] = np.array([side], dtype=np.int64)
    return extra


def txt2img(
    client: ProdgenClient,
    name: str,
    prompt: str,
    sampling: Sampling | None = None,
    height: int | None = None,
    width: int | None = None,
    conditions: XlConditions | None = None,
) -> np.ndarray:
    """`sampling.count` pictures (N, H, W, 3) uint8 for `prompt`; sides default to the model's trained size."""
    return _request(client, name, prompt, sampling, _txt2img_inputs(client, name, height, width, conditions))


def txt2latents(
    client: ProdgenClient,
    name: str,
    prompt: str,
    denoising_end: float,
    sampling: Sampling | None = None,
    height: int | None = None,
    width: int | None = None,
    conditions: XlConditions | None = None,
) -> np.ndarray:
    """The base's latents (N, 4, H/8, W/8) float32 after the first `denoising_end` of the schedule, for `refine`."""
    extra = {
        **_txt2img_inputs(client, name, height, width, conditions),
        "denoising_end": _fraction("denoising_end", denoising_end),
    }
    return _request(client, name, prompt, sampling, extra, output="latents")


def refine(
    client: ProdgenClient,
    name: str,
    prompt: str,
    latents: np.ndarray,
    denoising_start: float,
    sampling: Sampling | None = None,
    conditions: XlConditions | None = None,
) -> np.ndarray:
    """Pictures from a base's handed-off `latents` (one row per picture; `sampling.count` must match),
    denoised from `denoising_start` to the end of the schedule by the refiner `name`."""
    model = _diffusion_model(client, name)
    sampling = sampling or Sampling(count=len(latents))
    facts = _facts(model)
    if latents.ndim != 4 or latents.shape[0] != sampling.count or latents.shape[1] != facts.latent_channels:
        raise ProdgenError(
            f"latents: shape {tuple(latents.shape)} given, expected ({sampling.count}, {facts.latent_channels}, h, w)"
        )
    for label, side in (("latents height", latents.shape[2]), ("latents width", latents.shape[3])):
        _check_side(model, label, side * facts.vae_scale_factor)
    extra = {
        **(conditions.inputs(model) if conditions is not None else {}),
        "latents": np.ascontiguousarray(latents, dtype=np.float32),
        "denoising_start": _fraction("denoising_start", denoising_start),
    }
    return _request(client, name, prompt, sampling, extra)


def _strength(strength: float | None) -> dict[str, np.ndarray]:
    if strength is None:
        return {}
    if not 0.0 < strength <= 1.0:
        raise ProdgenError(f"strength {strength}: expected 0 < strength <= 1 (1 ignores the picture's content)")
    return {"strength": np.array([strength], dtype=np.float32)}


def img2img(
    client: ProdgenClient,
    name: str,
    prompt: str,
    image: np.ndarray,
    strength: float | None = None,
    sampling: Sampling | None = None,
) -> np.ndarray:
    """`image` (H, W, 3) restyled by `prompt`: `strength` is how much of it is re-drawn (0..1]."""
    model = _diffusion_model(client, name)
    if _facts(model).inpainting:
        raise ProdgenError(f"model '{name}' is an inpainting model: use inpaint or restage")
    _check_picture(model, image)
    return _request(client, name, prompt, sampling, {"image": image, **_strength(strength)})


def inpaint(
    client: ProdgenClient,
    name: str,
    prompt: str,
    image: np.ndarray,
    mask: np.ndarray,
    strength: float | None = None,
    sampling: Sampling | None = None,
) -> np.ndarray:
    """`image` with the area where `mask` ≥ 128 regenerated from `prompt`."""
    model = _diffusion_model(client, name)
    _check_picture(model, image)
    mask = _check_mask(mask, image)
    if not (mask >= 128).any():
        raise ProdgenError("mask: no pixel is marked for repainting (values ≥ 128); nothing to do")
    return _request(client, name, prompt, sampling, {"image": image, "mask": mask, **_strength(strength or 1.0)})


def restage(
    client: ProdgenClient,
    name: str,
    prompt: str,
    cutout: np.ndarray,
    sampling: Sampling | None = None,
) -> np.ndarray:
    """An RGBA product cutout (H, W, 4) placed in a new scene: the background is generated from
    `prompt` and the product's opaque pixels are kept exactly (soft edges blend by alpha)."""
    model = _diffusion_model(client, name)
    if cutout.ndim != 3 or cutout.shape[-1] != 4 or cutout.dtype != np.uint8:
        raise ProdgenError(
            f"cutout: shape {tuple(cutout.shape)} {cutout.dtype} given, expected an RGBA uint8 picture (height, width, 4)"
        )
    alpha = cutout[..., 3:].astype(np.float32) / OPAQUE
    if (cutout[..., 3] == OPAQUE).all():
        raise ProdgenError("cutout: every pixel is opaque, so there is no background to replace")
    if not (cutout[..., 3] == OPAQUE).any():
        raise ProdgenError("cutout: no opaque pixel, so there is no product to keep; use txt2img")
    rgb = cutout[..., :3].astype(np.float32)
    image = np.round(rgb * alpha + FILL_GREY * (1 - alpha)).astype(np.uint8)
    _check_picture(model, image, "cutout")
    mask = np.where(cutout[..., 3:] == OPAQUE, KEEP, REPAINT).astype(np.uint8)
    generated = _request(
        client, name, prompt, sampling, {"image": image, "mask": mask, "strength": np.array([1.0], np.float32)}
    )
    blended = alpha * rgb + (1 - alpha) * generated.astype(np.float32)
    return np.round(blended).astype(np.uint8)
