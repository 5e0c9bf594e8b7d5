"""Fitting a photo of any size to a model's picture bounds and back: sizes, resizing, and the line that says so.

Published beside the `model.py` of the diffusion pipeline and of the restage pipeline, so it imports numpy
only. One resize filter everywhere, stated in every fitting line: `FILTER`, a triangle (bilinear) filter
over pixel centres that widens to the scale when shrinking, as PIL's `Image.BILINEAR` does, so a 600-pixel
photo shrunk to 64 averages every source pixel instead of sampling a few (no aliasing).
"""

from __future__ import annotations

import math

import numpy as np

FILTER = "bilinear"
"""The name the fitting lines give the one resize filter of this module."""


def _weights(source: int, target: int) -> np.ndarray:
    """The (target, source) matrix taking `source` samples to `target`: each row a normalised triangle
    around the target pixel's centre, `max(1, source / target)` source pixels wide on each side (at the
    picture's edges the triangle is cut and renormalised)."""
    scale = source / target
    support = max(scale, 1.0)
    centres = (np.arange(target, dtype=np.float64) + 0.5) * scale
    positions = np.arange(source, dtype=np.float64) + 0.5
    weights = np.clip(1.0 - np.abs(positions[None, :] - centres[:, None]) / support, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _resize_axis(values: np.ndarray, axis: int, target: int) -> np.ndarray:
    """`values` (H, W, C) float32 resized along `axis`, as one matrix product over the other axes."""
    moved = np.moveaxis(values, axis, 0)
    rows = _weights(moved.shape[0], target) @ moved.reshape(moved.shape[0], -1)
    return np.moveaxis(rows.reshape(target, *moved.shape[1:]), 0, axis)


def resize(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """A uint8 (H, W, C) picture resized to (height, width, C) with `FILTER`, rounded back to uint8."""
    if picture.shape[:2] == (height, width):
        return picture
    values = picture.astype(np.float32)
    # The shrinking axis first, so the second pass has the fewer rows to read.
    order = sorted(((0, height), (1, width)), key=lambda item: item[1] / picture.shape[item[0]])
    for axis, target in order:
        if values.shape[axis] != target:
            values = _resize_axis(values, axis, target)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def within(height: int, width: int, min_side: int, max_side: int, multiple: int) -> bool:
    """Whether a picture of this size is one the model takes as it is."""
    return all(min_side <= side <= max_side and side % multiple == 0 for side in (height, width))


def fitted_size(height: int, width: int, min_side: int, max_side: int, multiple: int) -> tuple[int, int]:
    """The size a height×width picture is resized to for a model taking multiples of `multiple` in
    min_side..max_side: unchanged when it already fits; else scaled with its aspect kept (the longer side
    down to max_side, or the shorter up to min_side), each side rounded to the nearest multiple. Only a
    picture too elongated for the bounds loses its aspect, its short side clamped to the smallest side."""
    if within(height, width, min_side, max_side, multiple):
        return height, width
    scale = 1.0
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
    elif min(height, width) < min_side:
        scale = min_side / min(height, width)
    lowest = math.ceil(min_side / multiple) * multiple
    highest = (max_side // multiple) * multiple

    def side(value: int) -> int:
        return min(max(round(value * scale / multiple) * multiple, lowest), highest)

    return side(height), side(width)


def size_text(height: int, width: int) -> str:
    return f"{width}×{height}"
