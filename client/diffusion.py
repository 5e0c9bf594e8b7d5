"""Latent-diffusion requests: text → picture, picture → picture, inpainting and restaging.

One gRPC call to the pipeline model per up to max-batch pictures; the server runs the whole
denoising loop. Picture *i* of a request uses seed + *i*, so any picture can be reproduced
alone. Inputs are checked here first (prompt, sizes, mask) so a mistake costs one clear line,
not a round trip; the server checks the same things for clients that are not this one.

Pictures of any size up to the model's photo bound are fitted by the server and answered at
their own size; what was resized comes back as a `PictureFittedWarning`. Restaging calls the
pipeline's restage model (`NAME_restage`), which does the cutout, the fitting and the
compositing on the server, so a bare tritonclient call gets the same picture.

SDXL base → refiner hand-off is two calls: `txt2latents` on the base stops at `denoising_end`
and returns its latents; `refine` on the refiner continues from them at `denoising_start`
(the same fraction, steps and scheduler). `XlConditions` are SDXL's size/crop conditioning.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from prodgen.contract import check_image_array
from prodgen.errors import ProdgenError

if TYPE_CHECKING:
    from prodgen.client.api import ProdgenClient, ServedModel
    from prodgen.model_facts import DiffusionFacts


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
        if not _facts(model).family.startswith("SDXL"):
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


class DiffusionWarning(UserWarning):
    """A request the model answers, but likely not as hoped: the CLI prints each as one line."""


class PromptTruncatedWarning(DiffusionWarning):
    """The prompt had more tokens than the text encoder reads; the rest was dropped."""


class PictureFittedWarning(UserWarning):
    """The server fitted the picture (resized it to the model's bounds and back, put an inpainting's kept
    pixels back); the message says how."""


class UnknownWordsWarning(DiffusionWarning):
    """The prompt has words the model's (small) tokenizer does not hold whole."""


class TrainedSizeWarning(DiffusionWarning):
    """The picture's size is not the one the model was trained at."""


def _warn(warning: DiffusionWarning) -> None:
    warnings.warn(warning, stacklevel=4)


def _prompt_words(prompt: str) -> list[str]:
    """The words of a prompt as CLIP's tokenizer splits them (lower case, letters only)."""
    return re.findall(r"[^\W\d_]+", prompt.lower())


def unknown_words(facts: DiffusionFacts, prompt: str) -> list[str]:
    """The prompt's words the model's tokenizer does not hold whole; [] where its words are not published."""
    if not facts.known_words:
        return []
    known = set(facts.known_words.split(","))
    # a single letter is always one token whole (the byte-level base of the vocabulary)
    return list(dict.fromkeys(word for word in _prompt_words(prompt) if len(word) > 1 and word not in known))


def _warn_trained_size(model: ServedModel, height: int, width: int) -> None:
    trained = model.bounds.opt_side if model.bounds else None
    if trained is not None and (height, width) != (trained, trained):
        _warn(
            TrainedSizeWarning(
                f"size {width}×{height}: model '{model.name}' was trained at {trained}×{trained}; "
                "pictures away from that size may fall apart"
            )
        )


def _diffusion_model(client: ProdgenClient, name: str) -> ServedModel:
    model = client.model(name)
    if model.task == "diffusion" and model.facts.diffusion is None:
        pipeline = _pipeline_of(client, name)
        called = f"pipeline '{pipeline}'" if pipeline else "its pipeline"
        raise ProdgenError(f"model '{name}' is a component of {called}, not a pipeline itself; call {called}")
    if model.task != "diffusion" or model.facts.diffusion is None:
        raise ProdgenError(f"model '{name}' is not a diffusion pipeline (task: {model.task})")
    return model


def _pipeline_of(client: ProdgenClient, component: str) -> str | None:
    """The served pipeline that calls `component`: export publishes a pipeline NAME's components as NAME_<part>."""
    pipelines = [m.name for m in client.models() if m.facts.diffusion is not None]
    return max((p for p in pipelines if component.startswith(p + "_")), key=len, default=None)


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


def _check_picture(model: ServedModel, image: np.ndarray, label: str = "image", fit: bool = True) -> None:
    """A (H, W, 3) uint8 picture: with `fit`, any size up to the model's photo bound (the server fits
    it); without, within the model's own bounds."""
    if image.ndim != 3:
        raise ProdgenError(f"{label}: shape {tuple(image.shape)} given, expected (height, width, 3)")
    check_image_array(label, image[np.newaxis])
    if fit:
        largest = _facts(model).max_photo_side
        if max(image.shape[:2]) > largest:
            raise ProdgenError(
                f"{label}: {image.shape[1]}×{image.shape[0]} pixels, model '{model.name}' takes at most "
                f"{largest} pixels a side"
            )
        return
    _check_side(model, f"{label} height", image.shape[0])
    _check_side(model, f"{label} width", image.shape[1])
    _warn_trained_size(model, image.shape[0], image.shape[1])


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


def _check_sampling(model: ServedModel, sampling: Sampling) -> None:
    if sampling.count < 1:
        raise ProdgenError(f"count {sampling.count}: expected at least one picture")
    if sampling.seed < 0:
        raise ProdgenError(f"seed {sampling.seed}: expected a seed >= 0")
    facts = _facts(model)
    if sampling.steps is not None and not 1 <= sampling.steps <= facts.max_steps:
        raise ProdgenError(f"steps {sampling.steps}: expected 1..{facts.max_steps}")
    known = facts.schedulers.split(",")
    if sampling.scheduler is not None and sampling.scheduler not in known:
        raise ProdgenError(f"scheduler '{sampling.scheduler}': model '{model.name}' offers {', '.join(known)}")


def _sampling_inputs(prompt: str, sampling: Sampling) -> dict[str, np.ndarray]:
    encoded = _check_prompt(prompt)
    count = sampling.count
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
    return inputs


def _with_rows(inputs: dict[str, np.ndarray], extra: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """`extra` repeated once per picture: pictures (ndim > 1) as a batch, one-value arrays as a column."""
    for key, value in extra.items():
        if key == "latents":  # already one row per picture
            inputs[key] = value
            continue
        inputs[key] = (
            np.repeat(value[np.newaxis], count, axis=0) if value.ndim > 1 else _rows(value[0], count, value.dtype.type)
        )
    return inputs


def _warn_fitting(result: dict[str, np.ndarray]) -> None:
    fitting = result.get("fitting")
    if fitting is None:
        return
    lines = {value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in fitting.reshape(-1)}
    for line in sorted(line for line in lines if line):
        warnings.warn(line, PictureFittedWarning, stacklevel=4)


def _request(
    client: ProdgenClient,
    name: str,
    prompt: str,
    sampling: Sampling | None,
    extra: dict[str, np.ndarray],
    output: str = "image",
) -> np.ndarray:
    model = _diffusion_model(client, name)
    sampling = sampling or Sampling()
    _check_sampling(model, sampling)
    inputs = _with_rows(_sampling_inputs(prompt, sampling), extra, sampling.count)
    unknown = _warn_unknown_words(model, prompt)
    result = client.infer(name, inputs)
    _warn_truncated(model, result, unknown)
    _warn_fitting(result)
    return result[output]


def _warn_unknown_words(model: ServedModel, prompt: str) -> list[str]:
    """Name the prompt's words the model's tokenizer does not hold whole (one warning); returns them."""
    facts = _facts(model)
    unknown = unknown_words(facts, prompt)
    if unknown:
        _warn(
            UnknownWordsWarning(
                f"prompt: model '{model.name}' does not know the words {', '.join(repr(w) for w in unknown)}; "
                f"it knows {len(facts.known_words.split(','))} words (prodgen models lists them)"
            )
        )
    return unknown


def _warn_truncated(model: ServedModel, result: dict[str, np.ndarray], unknown: list[str]) -> None:
    truncated = result.get("truncated_tokens")
    dropped = 0 if truncated is None else int(truncated.max())
    if dropped:
        length = _facts(model).prompt_max_tokens
        why = (
            f"the unknown words {', '.join(repr(w) for w in unknown)} were spelled out in pieces; use words the model knows"
            if unknown
            else "shorten the prompt"
        )
        _warn(
            PromptTruncatedWarning(f"prompt: {dropped} tokens beyond the text encoder's {length} were dropped; {why}")
        )


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
    if height is not None or width is not None:
        trained = model.bounds.opt_side if model.bounds else None
        _warn_trained_size(model, height or trained or 0, width or trained or 0)
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


def _fit(fit: bool) -> dict[str, np.ndarray]:
    return {} if fit else {"fit": np.array([False])}


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
    fit: bool = True,
) -> np.ndarray:
    """`image` (H, W, 3) restyled by `prompt`: `strength` is how much of it is re-drawn (0..1].

    An image outside the model's bounds is fitted to them by the server and answered at its own size
    (`fit=False`: refused instead)."""
    model = _diffusion_model(client, name)
    if _facts(model).inpainting:
        raise ProdgenError(f"model '{name}' is an inpainting model: use inpaint or restage")
    _check_picture(model, image, fit=fit)
    return _request(client, name, prompt, sampling, {"image": image, **_strength(strength), **_fit(fit)})


def inpaint(
    client: ProdgenClient,
    name: str,
    prompt: str,
    image: np.ndarray,
    mask: np.ndarray,
    strength: float | None = None,
    sampling: Sampling | None = None,
    fit: bool = True,
) -> np.ndarray:
    """`image` with the area where `mask` ≥ 128 regenerated from `prompt`; every other pixel is the image's own.

    An image outside the model's bounds is fitted as in `img2img`."""
    model = _diffusion_model(client, name)
    _check_picture(model, image, fit=fit)
    mask = _check_mask(mask, image)
    if not (mask >= 128).any():
        raise ProdgenError("mask: no pixel is marked for repainting (values ≥ 128); nothing to do")
    extra = {"image": image, "mask": mask, **_strength(strength or 1.0), **_fit(fit)}
    return _request(client, name, prompt, sampling, extra)


@dataclass(frozen=True)
class Restaged:
    """What the restage model answers: the pictures (N, H, W, 3) at the photo's size, the matte (H, W, 1)
    the product was kept by, and the line saying how the photo was fitted."""

    images: np.ndarray
    matte: np.ndarray
    fitting: str


def _restage_model(client: ProdgenClient, name: str) -> tuple[ServedModel, str]:
    """The diffusion pipeline `name` (for its facts) and the name of its restage model."""
    model = client.model(name)
    if model.task == "restage" and model.facts.diffusion is not None:
        return model, name
    model = _diffusion_model(client, name)
    restage_model = _facts(model).restage_model
    if not restage_model:
        raise ProdgenError(f"model '{name}' has no restage model; export it again with this prodgen")
    return model, restage_model


def _photo_and_alpha(photo: np.ndarray, cutout_model: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    if photo.ndim != 3 or photo.shape[-1] not in (3, 4) or photo.dtype != np.uint8:
        raise ProdgenError(
            f"photo: shape {tuple(photo.shape)} {photo.dtype} given, expected an RGB (height, width, 3) "
            "or RGBA cutout (height, width, 4) uint8 picture"
        )
    if photo.shape[-1] == 4:
        rgb = np.ascontiguousarray(photo[..., :3])
        # A named cutout model wins over a picture's own alpha (an RGBA file that is simply opaque).
        return (rgb, None) if cutout_model is not None else (rgb, np.ascontiguousarray(photo[..., 3:]))
    if cutout_model is None:
        raise ProdgenError("photo: RGB without alpha; name a cutout model (--cutout) or give an RGBA cutout")
    return photo, None


def restage(
    client: ProdgenClient,
    name: str,
    prompt: str,
    photo: np.ndarray,
    sampling: Sampling | None = None,
    cutout_model: str | None = None,
    upscaler: str | None = None,
    force: bool = False,
) -> Restaged:
    """A product photo in a new scene from `prompt`, at the photo's own size, in one call to the server.

    `photo` is RGB with `cutout_model` naming the served cutout model that finds the product, or an RGBA
    cutout whose alpha is the matte. The product's opaque pixels are the photo's exactly, soft edges
    blend by the matte, the background is generated (and upscaled by `upscaler` if named). A matte that
    covers almost nothing or almost everything is refused unless `force`."""
    model, restage_model = _restage_model(client, name)
    rgb, alpha = _photo_and_alpha(photo, cutout_model)
    _check_picture(model, rgb, "photo")
    sampling = sampling or Sampling()
    _check_sampling(model, sampling)
    extra: dict[str, np.ndarray] = {"photo": rgb}
    if alpha is not None:
        extra["alpha"] = alpha
    for key, value in (("cutout_model", cutout_model), ("upscaler", upscaler)):
        if value is not None:
            extra[key] = np.array([value.encode("utf-8")], dtype=np.object_)
    if force:
        extra["force"] = np.array([True])
    inputs = _with_rows(_sampling_inputs(prompt, sampling), extra, sampling.count)
    unknown = _warn_unknown_words(model, prompt)
    result = client.infer(restage_model, inputs)
    _warn_truncated(model, result, unknown)
    fitting = result["fitting"].reshape(-1)[0]
    return Restaged(
        result["image"],
        result["matte"][0],
        fitting.decode("utf-8") if isinstance(fitting, bytes) else str(fitting),
    )
