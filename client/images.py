"""Reading and writing the images a shop sends and gets back: uint8 RGB arrays.

A file's header is read before its pixels: an image larger than the caller allows (or than
`MAX_PIXELS`, a decompression bomb's usual shape: a small file that decodes to gigabytes) is
refused from its declared size, before any memory is spent decoding it.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from prodgen.errors import ProdgenError

MAX_PIXELS = 64 * 1024 * 1024
"""The most pixels a picture may have (8192² = 64 Mi: 192 MiB as uint8 RGB)."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB as the picture is meant to be seen: EXIF rotation applied, transparency over white,
    16-bit and 32-bit greyscale scaled down to 8 bits instead of clipped."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(grey.max()), 1.0)
        return Image.fromarray(np.clip(np.rint(grey * (255.0 / top)), 0, 255).astype(np.uint8)).convert("RGB")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _read_checked(path: Path, max_side: int | None, keep_alpha: bool) -> np.ndarray:
    """The picture's pixels, refused from its header if a side exceeds `max_side` or it is too large in all."""
    if not path.is_file():
        raise ProdgenError(f"image: no file at {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by MAX_PIXELS
            with Image.open(path) as image:
                width, height = image.size
                if max_side is not None and max(width, height) > max_side:
                    raise ProdgenError(f"{path}: {width}×{height} pixels, expected at most {max_side} pixels a side")
                if width * height > MAX_PIXELS:
                    raise ProdgenError(
                        f"{path}: {width}×{height} pixels, expected at most {MAX_PIXELS:,} pixels in all"
                    )
                if keep_alpha and _has_alpha(image):
                    upright = ImageOps.exif_transpose(image) or image
                    return np.asarray(upright.convert("RGBA"), dtype=np.uint8).copy()
                return np.asarray(_to_rgb(image), dtype=np.uint8).copy()
    except Image.DecompressionBombError as error:
        raise ProdgenError(f"{path}: refused as a decompression bomb ({error})") from error
    except (UnidentifiedImageError, OSError) as error:
        raise ProdgenError(f"{path}: not an image file PIL can read (expected PNG, JPEG, WebP, …)") from error


def read_image(path: Path, max_side: int | None = None) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3); refused from its header if a side exceeds `max_side`."""
    return _read_checked(path, max_side, keep_alpha=False)


def read_photo(path: Path, max_side: int | None = None) -> np.ndarray:
    """A product photo: uint8 RGBA (H, W, 4) when the file has transparency (a cutout), else RGB (H, W, 3)."""
    return _read_checked(path, max_side, keep_alpha=True)


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


def write_image(path: Path, image: np.ndarray) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    except ValueError as error:  # PIL: unknown file extension
        raise ProdgenError(
            f"{path}: cannot write a picture there ({error}); expected a .png, .jpg or .webp name"
        ) from error
    except OSError as error:
        raise ProdgenError(f"{path}: cannot write a picture there ({error.strerror or error})") from error
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
