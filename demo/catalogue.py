"""A generated product catalogue: product silhouettes drawn with PIL, by category.

Each picture is one product (t-shirt, mug, bottle, shoe, handbag, cap) in a random colour,
size and position on a light studio background with a soft floor shadow, drawn at 2× and
downsampled for smooth edges. A seed gives the same catalogue everywhere: it is the demo
conditional generator's training data, and nothing about it needs a licence.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = ("t-shirt", "mug", "bottle", "shoe", "handbag", "cap")
SIDE = 64
_DRAW_SIDE = 2 * SIDE

Point = tuple[float, float]


def _tshirt(draw: ImageDraw.ImageDraw, box: Callable[[float, float], Point], colour: tuple[int, ...]) -> None:
    outline = [
        (0.30, 0.10),
        (0.42, 0.10),
        (0.50, 0.18),
        (0.58, 0.10),
        (0.70, 0.10),
        (0.95, 0.32),
        (0.84, 0.45),
        (0.74, 0.37),
        (0.74, 0.92),
        (0.26, 0.92),
        (0.26, 0.37),
        (0.16, 0.45),
        (0.05, 0.32),
    ]
    draw.polygon([box(x, y) for x, y in outline], fill=colour)


def _mug(draw: ImageDraw.ImageDraw, box: Callable[[float, float], Point], colour: tuple[int, ...]) -> None:
    draw.ellipse(
        [box(0.58, 0.30), box(0.95, 0.72)], outline=colour, width=max(3, round(box(0.09, 0)[0] - box(0, 0)[0]))
    )
    draw.rounded_rectangle([box(0.12, 0.18), box(0.72, 0.90)], radius=6, fill=colour)


def _bottle(draw: ImageDraw.ImageDraw, box: Callable[[float, float], Point], colour: tuple[int, ...]) -> None:
    draw.rectangle([box(0.43, 0.02), box(0.57, 0.12)], fill=tuple(max(0, c - 60) for c in colour))
    draw.polygon([box(0.43, 0.12), box(0.57, 0.12), box(0.70, 0.32), box(0.30, 0.32)], fill=colour)
    draw.rounded_rectangle([box(0.30, 0.30), box(0.70, 0.97)], radius=8, fill=colour)


def _shoe(draw: ImageDraw.ImageDraw, box: Callable[[float, float], Point], colour: tuple[int, ...]) -> None:
    upper = [(0.08, 0.40), (0.38, 0.40), (0.48, 0.55), (0.80, 0.62), (0.95, 0.74), (0.95, 0.84), (0.06, 0.84)]
    draw.polygon([box(x, y) for x, y in upper], fill=colour)
    draw.rectangle([box(0.05, 0.84), box(0.96, 0.92)], fill=(235, 235, 230))


def _handbag(draw: ImageDraw.ImageDraw, box: Callable[[float, float], Point], colour: tuple[int, ...]) -> None:
    draw.arc(
        [box(0.28, 0.08), box(0.72, 0.62)],
        180,
        360,
        fill=tuple(max(0, c - 50) for c in colour),
        width=max(3, round(box(0.06, 0)[0] - box(0, 0)[0])),
    )
    draw.polygon([box(0.20, 0.36), box(0.80, 0.36), box(0.92, 0.92), box(0.08, 0.92)], fill=colour)


def _cap(draw: ImageDraw.ImageDraw, box: Callable[[float, float], Point], colour: tuple[int, ...]) -> None:
    draw.chord([box(0.12, 0.22), box(0.78, 0.98)], 180, 360, fill=colour)
    draw.ellipse([box(0.50, 0.52), box(0.98, 0.68)], fill=tuple(max(0, c - 40) for c in colour))
    draw.ellipse([box(0.41, 0.18), box(0.49, 0.26)], fill=colour)


_DRAWERS = (_tshirt, _mug, _bottle, _shoe, _handbag, _cap)


def draw_product(
    draw: ImageDraw.ImageDraw, category: int, left: float, top: float, size: float, colour: tuple[int, ...]
) -> None:
    """Draw product `category` (an index into CATEGORIES) filling the square at (left, top) of side `size`."""
    _DRAWERS[category](draw, lambda x, y: (left + x * size, top + y * size), colour)


def render(category: int, rng: np.random.Generator) -> np.ndarray:
    """One product picture of `category` (an index into CATEGORIES), uint8 RGB (SIDE, SIDE, 3)."""
    background = int(rng.integers(228, 252))
    image = Image.new("RGB", (_DRAW_SIDE, _DRAW_SIDE), (background, background, background - int(rng.integers(0, 8))))
    draw = ImageDraw.Draw(image)
    size = rng.uniform(0.62, 0.86) * _DRAW_SIDE
    left = rng.uniform(0.04 * _DRAW_SIDE, _DRAW_SIDE - size - 0.04 * _DRAW_SIDE)
    top = rng.uniform(0.02 * _DRAW_SIDE, _DRAW_SIDE - size - 0.06 * _DRAW_SIDE)
    shadow = background - 26
    draw.ellipse([left + 0.08 * size, top + 0.90 * size, left + 0.92 * size, top + 1.04 * size], fill=(shadow,) * 3)
    red, green, blue = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.45, 0.95), rng.uniform(0.35, 0.9))
    colour = (round(255 * red), round(255 * green), round(255 * blue))
    draw_product(draw, category, left, top, size, colour)
    return np.asarray(image.resize((SIDE, SIDE), Image.Resampling.LANCZOS))


def catalogue(per_category: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_category` pictures of every category: uint8 (N, SIDE, SIDE, 3) and int64 labels (N,)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CATEGORIES)), per_category)
    rng.shuffle(labels)
    return np.stack([render(int(label), rng) for label in labels]), labels
