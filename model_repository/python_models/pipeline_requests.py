"""Reading and checking the inputs of a pipeline request: the one home for every pipeline model's refusals.

Published beside the `model.py` of each prodgen pipeline model (the diffusion pipeline, and any pipeline
that builds on it), so it imports numpy only and runs in the python backend of a production Triton.
Every problem is a `RequestError` whose message names the input and what was expected; the model answers
it with INVALID_ARGUMENT before any component model is called.

A pipeline declares what it accepts once, as `Limits` read from its config's parameters; the functions
below take those limits and a `pb_utils.InferenceRequest` (anything with the input tensors the python
backend gives: `get_input(request, name)` is the one place that asks the backend).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import photo_fitting  # type: ignore[import-not-found]  # published beside this file; model.py puts the folder on the path


class RequestError(ValueError):
    """A request the pipeline refuses; the message is the one line the caller sees."""


REFUSALS_METRIC = "prodgen_request_refusals"
"""Requests refused with INVALID_ARGUMENT, per model and version, on Triton's metrics port: the
python backend of tritonserver 2.51 counts an error response as a success in Triton's own
counters (the same counter as serve/onnx_model.py's, which says more)."""


def refusal_counter(pb_utils: Any, model: str, version: str) -> tuple[Any, Any]:
    """The `REFUSALS_METRIC` family and this model version's counter in it; keep both alive."""
    family = pb_utils.MetricFamily(
        name=REFUSALS_METRIC,
        description="Requests refused with INVALID_ARGUMENT (prodgen's checks of inputs and bounds)",
        kind=pb_utils.MetricFamily.COUNTER,
    )
    return family, family.Metric(labels={"model": model, "version": version})


@dataclass(frozen=True)
class Limits:
    """What a pipeline accepts: picture sides, denoising steps, guidance, schedulers, and the defaults."""

    min_side: int
    max_side: int
    side_multiple: int
    default_side: int
    max_steps: int
    schedulers: Sequence[str]
    defaults: dict[str, Any] = field(default_factory=dict)
    """Request defaults by input name (steps, guidance, scheduler, strength)."""
    max_guidance: float = 50.0
    max_photo_side: int = 4096
    """The largest side of a photo the pipeline fits to its bounds; larger ones are refused from their shape."""


def limits_from(parameter: Callable[[str], str], schedulers: Sequence[str]) -> Limits:
    """A pipeline's limits from its config's parameters (`parameter(name)` without the `prodgen.` prefix)."""
    return Limits(
        min_side=int(parameter("min_side")),
        max_side=int(parameter("max_side")),
        side_multiple=int(parameter("side_multiple")),
        default_side=int(parameter("opt_side")),
        max_steps=int(parameter("diffusion.max_steps")),
        schedulers=schedulers,
        defaults={
            "steps": int(parameter("default_steps")),
            "guidance": float(parameter("default_guidance")),
            "scheduler": parameter("default_scheduler"),
            "strength": float(parameter("default_strength")),
        },
        max_photo_side=int(parameter("diffusion.max_photo_side")),
    )


InputReader = Callable[[Any, str], "np.ndarray | None"]


def prompt_rows(read: InputReader, request: Any) -> int:
    """The pictures a request asks for: one row of its required `prompt` input each."""
    prompt = read(request, "prompt")
    if prompt is None:
        raise RequestError("input 'prompt' is missing")
    return int(prompt.shape[0])


def input_reader(get_input_tensor_by_name: Callable[[Any, str], Any]) -> InputReader:
    """`pb_utils.get_input_tensor_by_name` as a function giving a numpy array, or None when the input is absent."""

    def read(request: Any, name: str) -> np.ndarray | None:
        tensor = get_input_tensor_by_name(request, name)
        return None if tensor is None else tensor.as_numpy()

    return read


def texts(read: InputReader, request: Any, name: str, rows: int) -> list[str] | None:
    """One UTF-8 text per row, or None when the input is absent."""
    array = read(request, name)
    if array is None:
        return None
    if array.shape[0] != rows:
        raise RequestError(f"input '{name}': {array.shape[0]} rows, expected one per picture ({rows})")
    values = []
    for value in array.reshape(rows, -1)[:, 0]:
        try:
            values.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
        except UnicodeDecodeError:
            raise RequestError(f"input '{name}': not UTF-8 text") from None
    return values


def scalar(read: InputReader, request: Any, name: str, rows: int, kind: type, default: Any = None) -> Any:
    """One value per row, the same for every row of the request (sampler settings are per request).

    NaN and infinities are named as such before rows are compared (NaN equals nothing, itself included)."""
    array = read(request, name)
    if array is None:
        return default
    values = array.reshape(-1)
    if values.size != rows:
        raise RequestError(f"input '{name}': {values.size} values, expected one per picture ({rows})")
    if kind is str:
        values = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values])
    if kind is float:
        for value in values:
            if not math.isfinite(float(value)):
                raise RequestError(f"input '{name}': {value} is not a finite number")
    if not (values == values[0]).all():
        raise RequestError(f"input '{name}': every picture of one request must use the same value")
    value = values[0]
    if kind is float:
        # FP32 on the wire: a strength of 0.7 arrives as 0.699999988, and int(10 steps × that) is 6 where
        # the caller (and diffusers, computing with the typed 0.7) means 7. The shortest decimal that
        # round-trips the float32 is the value the caller sent.
        return float(str(value))
    return kind(value)


def check_side(limits: Limits, label: str, side: int) -> None:
    if not limits.min_side <= side <= limits.max_side or side % limits.side_multiple:
        raise RequestError(
            f"{label} {side} pixels: expected a multiple of {limits.side_multiple} "
            f"in {limits.min_side}..{limits.max_side}"
        )


def size(
    read: InputReader,
    request: Any,
    rows: int,
    limits: Limits,
    image: np.ndarray | None,
    fit: bool = False,
    source: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The picture's height and width at the model: the image's own (or `source`'s, the size given latents
    decode to) where one is given (with `fit`, the size photo_fitting fits an image to), else the inputs or
    the default side.

    An explicit 0 is refused like any other side outside the bounds; only an absent input takes the default."""
    height = scalar(read, request, "height", rows, int)
    width = scalar(read, request, "width", rows, int)
    if image is not None:
        source = image.shape[1], image.shape[2]
    if source is not None:
        image_h, image_w = source
        for label, given, actual in (("height", height, image_h), ("width", width, image_w)):
            if given is not None and given != actual:
                raise RequestError(f"input '{label}': {given}, but the image is {actual} pixels")
        height, width = image_h, image_w
        if fit and image is not None:
            return photo_fitting.fitted_size(height, width, limits.min_side, limits.max_side, limits.side_multiple)
    height = limits.default_side if height is None else height
    width = limits.default_side if width is None else width
    check_side(limits, "height", height)
    check_side(limits, "width", width)
    return height, width


def flag(read: InputReader, request: Any, name: str, rows: int, default: bool) -> bool:
    """A BOOL input, the same for every row, or `default` when absent."""
    return bool(scalar(read, request, name, rows, bool, default))


def side_image(read: InputReader, request: Any, name: str, image: np.ndarray) -> np.ndarray | None:
    """A uint8 (rows, H, W, 1) input the size of `image` (a mask, an alpha matte), or None when absent."""
    values = read(request, name)
    if values is None:
        return None
    expected = (*image.shape[:3], 1)
    if values.shape != expected:
        raise RequestError(f"input '{name}': shape {values.shape}, expected {expected} (the size of the picture)")
    if values.dtype != np.uint8:
        raise RequestError(f"input '{name}': dtype {values.dtype}, expected uint8")
    return values


def image_batch(
    read: InputReader, request: Any, name: str, rows: int, channels: int, limits: Limits | None = None
) -> np.ndarray | None:
    """A uint8 (rows, H, W, channels) picture input, or None when absent; with `limits`, refused over the photo
    bound from its shape alone (the python backend maps the request's memory, so no pixel has been read)."""
    image = read(request, name)
    if image is None:
        return None
    if image.ndim != 4 or image.shape[0] != rows or image.shape[-1] != channels:
        raise RequestError(f"input '{name}': shape {image.shape}, expected ({rows}, height, width, {channels})")
    if limits is not None and max(image.shape[1:3]) > limits.max_photo_side:
        raise RequestError(
            f"input '{name}': {image.shape[2]}×{image.shape[1]} pixels, "
            f"expected at most {limits.max_photo_side} pixels a side"
        )
    if image.dtype != np.uint8:
        raise RequestError(f"input '{name}': dtype {image.dtype}, expected uint8")
    return image


def seeds(read: InputReader, request: Any, rows: int) -> np.ndarray:
    values = read(request, "seed")
    values = np.zeros(rows, dtype=np.int64) if values is None else values.reshape(-1).astype(np.int64)
    if values.size != rows or (values < 0).any():
        raise RequestError(f"input 'seed': expected one seed >= 0 per picture ({rows})")
    return values


def sampler(read: InputReader, request: Any, rows: int, limits: Limits, has_image: bool) -> dict[str, Any]:
    """Steps, guidance, scheduler and (with an image) strength, checked against the limits."""
    steps = scalar(read, request, "steps", rows, int, limits.defaults.get("steps"))
    if not 1 <= steps <= limits.max_steps:
        raise RequestError(f"input 'steps': {steps}, expected 1..{limits.max_steps}")
    guidance = scalar(read, request, "guidance", rows, float, limits.defaults.get("guidance"))
    if not 0.0 <= guidance <= limits.max_guidance:
        raise RequestError(f"input 'guidance': {guidance}, expected 0..{limits.max_guidance:g}")
    scheduler = scalar(read, request, "scheduler", rows, str, limits.defaults.get("scheduler"))
    if scheduler not in limits.schedulers:
        raise RequestError(f"input 'scheduler': '{scheduler}', expected one of {', '.join(limits.schedulers)}")
    strength = scalar(read, request, "strength", rows, float, limits.defaults.get("strength")) if has_image else 1.0
    if not 0.0 < strength <= 1.0:
        raise RequestError(f"input 'strength': {strength}, expected 0 < strength <= 1")
    if has_image and int(steps * strength) < 1:
        raise RequestError(f"steps {steps} × strength {strength} leaves no denoising step; raise either")
    return {"steps": steps, "guidance": guidance, "scheduler": scheduler, "strength": strength}


# ── models named in a request (a cutout model, an upscaler) ──

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PARAMETER = re.compile(r'key:\s*"([^"]+)"\s*value\s*\{\s*string_value:\s*"([^"]*)"')
_FIRST_TENSOR = {kind: re.compile(kind + r'\s*\{\s*name:\s*"([^"]+)"') for kind in ("input", "output")}


@dataclass(frozen=True)
class NamedModel:
    """A model a request names, as its config in the repository describes it."""

    name: str
    parameters: dict[str, str]
    """Its `prodgen.*` parameters, without the prefix."""
    first_input: str
    first_output: str

    def side(self, key: str, default: int) -> int:
        return int(self.parameters.get(key, default))


def named_model(repository: str, input_name: str, name: str, task: str) -> NamedModel:
    """The model `name` of the repository folder that holds this pipeline, refused unless its task is `task`.

    Its config.pbtxt is read from the repository folder (the python backend has no call for another
    model's config); whether it is loaded shows when it is called."""
    if not _MODEL_NAME.fullmatch(name):
        raise RequestError(f"input '{input_name}': '{name}' is not a model name")
    path = os.path.join(repository, name, "config.pbtxt")
    if not os.path.isfile(path):
        raise RequestError(f"input '{input_name}': no model '{name}' in this server's repository")
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    parameters = {
        key.removeprefix("prodgen."): value for key, value in _PARAMETER.findall(text) if key.startswith("prodgen.")
    }
    found = parameters.get("task", "")
    if found != task:
        article = "an" if task[:1] in "aeiou" else "a"
        raise RequestError(
            f"input '{input_name}': model '{name}' is not {article} {task} model (task: {found or 'none'})"
        )
    tensors = {kind: pattern.search(text) for kind, pattern in _FIRST_TENSOR.items()}
    if tensors["input"] is None or tensors["output"] is None:
        raise RequestError(f"input '{input_name}': model '{name}' declares no input or no output")
    return NamedModel(name, parameters, tensors["input"].group(1), tensors["output"].group(1))


def model_name(read: InputReader, request: Any, name: str, rows: int) -> str | None:
    """A BYTES input naming a model, the same for every row, or None when absent or empty."""
    value = scalar(read, request, name, rows, str)
    return value.strip() or None if value is not None else None


def latents_batch(read: InputReader, request: Any, rows: int, channels: int, factor: int) -> np.ndarray | None:
    """Handed-off latents (rows, channels, h, w) float32, finite, or None when absent."""
    latents = read(request, "latents")
    if latents is None:
        return None
    if latents.ndim != 4 or latents.shape[0] != rows or latents.shape[1] != channels:
        raise RequestError(
            f"input 'latents': shape {latents.shape}, expected ({rows}, {channels}, height/{factor}, width/{factor})"
        )
    if latents.dtype != np.float32:
        raise RequestError(f"input 'latents': dtype {latents.dtype}, expected float32")
    if not np.isfinite(latents).all():
        raise RequestError("input 'latents': contains NaN or infinity")
    return latents


def handoff(read: InputReader, request: Any, rows: int, source: str | None, mask: bool) -> dict[str, Any]:
    """`denoising_end` (stop early and return latents) and `denoising_start` (continue from given latents
    or an image without re-noising it), both fractions of the schedule in (0, 1), as diffusers' SDXL
    pipelines take them. `source` names the given image input ('image' or 'latents'), if any."""
    end = scalar(read, request, "denoising_end", rows, float)
    start = scalar(read, request, "denoising_start", rows, float)
    for name, value in (("denoising_end", end), ("denoising_start", start)):
        if value is not None and not 0.0 < value < 1.0:
            raise RequestError(f"input '{name}': {value}, expected a fraction of the schedule, 0 < {name} < 1")
    if start is not None and source is None:
        raise RequestError("input 'denoising_start' needs 'latents' (or an 'image') to continue from")
    if start is not None and mask:
        raise RequestError("input 'denoising_start' cannot be combined with a 'mask'")
    if start is not None and end is not None and start >= end:
        raise RequestError(f"input 'denoising_start' {start} must be below 'denoising_end' {end}")
    return {"denoising_end": end, "denoising_start": start}


def xl_conditions(
    read: InputReader, request: Any, rows: int, height: int, width: int, defaults: dict[str, float]
) -> dict[str, Any]:
    """SDXL's added conditions: the original size (default: the picture's), the crop's top-left corner
    (default 0, 0) and, for a refiner, the aesthetic scores (defaults from the model's parameters)."""
    values: dict[str, Any] = {}
    for name, default in (("original_height", height), ("original_width", width), ("crop_top", 0), ("crop_left", 0)):
        value = scalar(read, request, name, rows, int, default)
        low = 0 if name.startswith("crop") else 1
        if not low <= value <= 1 << 16:
            raise RequestError(f"input '{name}': {value}, expected {low}..{1 << 16} pixels")
        values[name] = value
    for name in ("aesthetic_score", "negative_aesthetic_score"):
        value = scalar(read, request, name, rows, float, defaults[name])
        if not 0.0 <= value <= 10.0:
            raise RequestError(f"input '{name}': {value}, expected 0..10")
        values[name] = value
    return values
