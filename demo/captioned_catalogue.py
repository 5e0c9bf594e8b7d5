"""Product pictures drawn from the captions a shop writes: "red mug", "a navy cap on a wooden table".

A caption names a category (the six of `catalogue.py`), one of eight named colours and a
background (a plain studio, a wooden table, a beach); the picture is drawn from exactly that,
with a seeded jitter of the colour's shade, the product's size and place, and the scene's
light. Six (category, colour) pairs are held out: the demo's diffusion model never sees them
in training, so its pictures for them show whether it composes a colour it knows with a
category it knows. Each held-out pair uses a different category and a different colour, so
every category and every colour is still trained on with the others.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from demo.catalogue import CATEGORIES, draw_product

SIDE = 32
"""Pictures are drawn at 4× this side and downsampled, for smooth edges."""
_DRAW_SIDE = 4 * SIDE

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.0, 0.85, 0.85),
    "orange": (0.08, 0.9, 0.95),
    "yellow": (0.145, 0.85, 0.95),
    "green": (0.35, 0.75, 0.6),
    "blue": (0.59, 0.8, 0.9),
    "navy": (0.625, 0.8, 0.38),
    "purple": (0.78, 0.6, 0.62),
    "pink": (0.92, 0.45, 0.98),
}
"""Colour name → its HSV centre; a picture's shade varies a little around it."""
COLOUR_NAMES = tuple(COLOURS)

BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "studio": ("", " on a white background"),
    "wooden table": (" on a wooden table",),
    "beach": (" on the beach", " on a beach"),
}
"""Background → the phrases a caption may end with (a studio picture often says nothing)."""
BACKGROUND_NAMES = tuple(BACKGROUNDS)

HELD_OUT: tuple[tuple[str, str], ...] = (
    ("t-shirt", "purple"),
    ("mug", "green"),
    ("bottle", "pink"),
    ("shoe", "yellow"),
    ("handbag", "blue"),
    ("cap", "orange"),
)
"""(category, colour) pairs never drawn for training."""


@dataclass(frozen=True)
class Product:
    """What one picture shows, as indices into CATEGORIES, COLOUR_NAMES and BACKGROUND_NAMES."""

    category: int
    colour: int
    background: int

    @property
    def pair(self) -> tuple[str, str]:
        return CATEGORIES[self.category], COLOUR_NAMES[self.colour]

    def caption(self, variant: int = 0) -> str:
        """The caption; `variant` picks the article and the background's wording."""
        phrases = BACKGROUNDS[BACKGROUND_NAMES[self.background]]
        category, colour = self.pair
        article = ("an " if colour[0] in "aeiou" else "a ") if variant % 2 else ""
        return f"{article}{colour} {category}{phrases[(variant // 2) % len(phrases)]}"


def _pairs(held_out: bool) -> list[tuple[int, int]]:
    return [
        (category, colour)
        for category in range(len(CATEGORIES))
        for colour in range(len(COLOUR_NAMES))
        if ((CATEGORIES[category], COLOUR_NAMES[colour]) in HELD_OUT) == held_out
    ]


def training_pairs() -> list[tuple[int, int]]:
    """(category, colour) indices the model is trained on: all 48 but the held-out six."""
    return _pairs(held_out=False)


def held_out_pairs() -> list[tuple[int, int]]:
    return _pairs(held_out=True)


def caption_words() -> list[str]:
    """Every word a caption may contain, as CLIP's tokenizer splits them ("t-shirt" is t, -, shirt)."""
    products = [Product(c, k, b) for c in range(len(CATEGORIES)) for k in range(len(COLOURS)) for b in (0, 1, 2)]
    variants = range(2 * max(len(phrases) for phrases in BACKGROUNDS.values()))
    text = " ".join(product.caption(variant) for product in products for variant in variants)
    return sorted(set(text.replace("-", " - ").split()))


def _colour(colour: int, rng: np.random.Generator) -> tuple[int, int, int]:
    hue, saturation, value = COLOURS[COLOUR_NAMES[colour]]
    hue = (hue + rng.uniform(-0.02, 0.02)) % 1.0
    saturation = float(np.clip(saturation + rng.uniform(-0.07, 0.07), 0, 1))
    value = float(np.clip(value + rng.uniform(-0.07, 0.07), 0, 1))
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(255 * red), round(255 * green), round(255 * blue)


def _shade(colour: tuple[int, ...], change: int) -> tuple[int, ...]:
    return tuple(int(np.clip(c + change, 0, 255)) for c in colour)


def _scene(draw: ImageDraw.ImageDraw, background: str, rng: np.random.Generator) -> tuple[float, tuple[int, ...]]:
    """Paint the background; returns where the floor starts (y on the canvas) and the floor's colour."""
    light = int(rng.integers(-12, 12))
    if background == "studio":
        grey = 240 + light
        floor = (grey, grey, grey - int(rng.integers(0, 8)))
        draw.rectangle([0, 0, _DRAW_SIDE, _DRAW_SIDE], fill=floor)
        return 0.45 * _DRAW_SIDE, floor
    horizon = rng.uniform(0.42, 0.55) * _DRAW_SIDE
    if background == "wooden table":
        wall = _shade((226, 214, 192), light)
        wood = _shade((158, 104, 62), light + int(rng.integers(-15, 15)))
        draw.rectangle([0, 0, _DRAW_SIDE, horizon], fill=wall)
        draw.rectangle([0, horizon, _DRAW_SIDE, _DRAW_SIDE], fill=wood)
        plank = rng.uniform(0.09, 0.12) * _DRAW_SIDE
        y = horizon + rng.uniform(0, plank)
        while y < _DRAW_SIDE:
            draw.line([0, y, _DRAW_SIDE, y], fill=_shade(wood, -45), width=_DRAW_SIDE // 48)
            y += plank
        draw.line([0, horizon, _DRAW_SIDE, horizon], fill=_shade(wood, -60), width=_DRAW_SIDE // 40)
        return horizon, wood
    sky = _shade((140, 196, 236), light)
    sea = _shade((38, 110, 170), light)
    sand = _shade((228, 206, 158), light)
    draw.rectangle([0, 0, _DRAW_SIDE, horizon], fill=sky)
    draw.rectangle([0, horizon - 0.08 * _DRAW_SIDE, _DRAW_SIDE, horizon], fill=sea)
    draw.rectangle([0, horizon, _DRAW_SIDE, _DRAW_SIDE], fill=sand)
    return horizon, sand


def render_product(product: Product, rng: np.random.Generator) -> np.ndarray:
    """One picture of `product`, uint8 RGB (SIDE, SIDE, 3): the product stands on the scene's floor,
    near the middle, as catalogue photos frame it (a short training run learns shapes that stay put)."""
    image = Image.new("RGB", (_DRAW_SIDE, _DRAW_SIDE))
    draw = ImageDraw.Draw(image)
    floor_top, floor = _scene(draw, BACKGROUND_NAMES[product.background], rng)
    size = rng.uniform(0.6, 0.74) * _DRAW_SIDE
    left = (_DRAW_SIDE - size) / 2 + rng.uniform(-0.06, 0.06) * _DRAW_SIDE
    bottom = max(rng.uniform(0.88, 0.96) * _DRAW_SIDE, floor_top + 0.15 * _DRAW_SIDE)
    top = bottom - 0.95 * size
    draw.ellipse(
        [left + 0.08 * size, top + 0.90 * size, left + 0.92 * size, top + 1.02 * size], fill=_shade(floor, -28)
    )
    draw_product(draw, product.category, left, top, size, _colour(product.colour, rng))
    return np.asarray(image.resize((SIDE, SIDE), Image.Resampling.LANCZOS))


def sample_products(count: int, pairs: list[tuple[int, int]], rng: np.random.Generator) -> list[Product]:
    """`count` products drawn evenly from `pairs` (cycled, then shuffled), each with a random background."""
    chosen = [pairs[index % len(pairs)] for index in range(count)]
    order = rng.permutation(count)
    backgrounds = rng.integers(len(BACKGROUND_NAMES), size=count)
    return [Product(chosen[i][0], chosen[i][1], int(b)) for i, b in zip(order, backgrounds, strict=True)]


@dataclass(frozen=True)
class CaptionedCatalogue:
    images: np.ndarray
    """uint8 (N, SIDE, SIDE, 3)"""
    captions: list[str]
    products: list[Product]

    def labels(self, field: str) -> np.ndarray:
        """int64 (N,) of one Product field: "category", "colour" or "background"."""
        return np.array([getattr(product, field) for product in self.products], dtype=np.int64)


def captioned_catalogue(count: int, seed: int, pairs: list[tuple[int, int]] | None = None) -> CaptionedCatalogue:
    """`count` captioned pictures of `pairs` (default: the training pairs); a seed gives the same catalogue."""
    rng = np.random.default_rng(seed)
    products = sample_products(count, training_pairs() if pairs is None else pairs, rng)
    variants = rng.integers(4, size=count)
    images = np.stack([render_product(product, rng) for product in products])
    captions = [product.caption(int(variant)) for product, variant in zip(products, variants, strict=True)]
    return CaptionedCatalogue(images, captions, products)


def render_cutout(product: Product, rng: np.random.Generator) -> np.ndarray:
    """The product alone, as a shop's cutout of a photo: RGBA (SIDE, SIDE, 4), opaque on the
    product, transparent around it (and inside a mug's handle), soft at the edges."""
    size = rng.uniform(0.6, 0.7) * _DRAW_SIDE
    left = (_DRAW_SIDE - size) / 2
    top = 0.96 * _DRAW_SIDE - 0.95 * size
    colour = _colour(product.colour, rng)
    picture = Image.new("RGB", (_DRAW_SIDE, _DRAW_SIDE), colour)
    draw_product(ImageDraw.Draw(picture), product.category, left, top, size, colour)
    silhouette = Image.new("L", (_DRAW_SIDE, _DRAW_SIDE), 0)
    draw_product(ImageDraw.Draw(silhouette), product.category, left, top, size, (255,))
    silhouette = silhouette.point(lambda value: 255 if value else 0)
    picture.putalpha(silhouette)
    return np.asarray(picture.resize((SIDE, SIDE), Image.Resampling.LANCZOS))
