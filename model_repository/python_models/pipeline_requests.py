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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class RequestError(ValueError):
    """A request the pipeline refuses; the message is the one line the caller sees."""


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


InputReader = Callable[[Any, str], "np.ndarray | None"]


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
    source: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The picture's height and width: the image's own (or `source`'s, the size given latents decode to)
    where one is given, else the inputs or the default side.

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
    height = limits.default_side if height is None else height
    width = limits.default_side if width is None else width
    check_side(limits, "height", height)
    check_side(limits, "width", width)
    return height, width


def image_batch(read: InputReader, request: Any, name: str, rows: int, channels: int) -> np.ndarray | None:
    """A uint8 (rows, H, W, channels) picture input, or None when absent."""
    image = read(request, name)
    if image is None:
        return None
    if image.ndim != 4 or image.shape[0] != rows or image.shape[-1] != channels:
        raise RequestError(f"input '{name}': shape {image.shape}, expected ({rows}, height, width, {channels})")
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
