"""Reading and writing the images a shop sends and gets back: uint8 RGB arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from prodgen.errors import ProdgenError


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3); alpha is dropped, greyscale expanded."""
    if not path.is_file():
        raise ProdgenError(f"image: no file at {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as error:
        raise ProdgenError(f"{path}: not an image file PIL can read (expected PNG, JPEG, WebP, …)") from error


def _read_mode(path: Path, mode: str) -> tuple[np.ndarray, str]:
    if not path.is_file():
        raise ProdgenError(f"image: no file at {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode), dtype=np.uint8).copy(), image.mode
    except (UnidentifiedImageError, OSError) as error:
        raise ProdgenError(f"{path}: not an image file PIL can read (expected PNG, JPEG, WebP, …)") from error


def read_mask(path: Path) -> np.ndarray:
    """A mask file as uint8 greyscale (H, W): 255 where the picture is to be repainted."""
    return _read_mode(path, "L")[0]


def read_cutout(path: Path) -> np.ndarray:
    """An RGBA product cutout (H, W, 4); a file without transparency is refused."""
    pixels, mode = _read_mode(path, "RGBA")
    if mode not in ("RGBA", "LA", "PA") and not (mode == "P" and pixels[..., 3].min() < 255):
        raise ProdgenError(
            f"{path}: no alpha channel (mode {mode}); expected an RGBA cutout, transparent around the product"
        )
    return pixels


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def image_grid(images: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile a (N, H, W, 3) batch into one picture, `columns` wide (square-ish by default)."""
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, channels), 255, dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        grid[top : top + height, left : left + width] = image
    return grid
