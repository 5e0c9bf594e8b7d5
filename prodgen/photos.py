"""Real photographs for verification, calibration and benchmarks.

scikit-image ships a few freely licensed photographs inside its wheel; they are honest
test inputs (textures, faces, edges, flat areas) and need no download.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


@cache
def photograph(name: str) -> np.ndarray:
    """One bundled photograph as uint8 RGB (H, W, 3)."""
    import skimage.data

    image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3])


def fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop `image` to the aspect of height×width, then resize it there."""
    source_h, source_w = image.shape[:2]
    scale = min(source_h / height, source_w / width)
    crop_h, crop_w = int(round(height * scale)), int(round(width * scale))
    top, left = (source_h - crop_h) // 2, (source_w - crop_w) // 2
    cropped = image[top : top + crop_h, left : left + crop_w]
    resized = Image.fromarray(cropped).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def photo_batch(count: int, height: int, width: int, offset: int = 0) -> np.ndarray:
    """`count` different photographs fitted to height×width, as a uint8 NHWC batch."""
    names = [PHOTO_NAMES[(offset + i) % len(PHOTO_NAMES)] for i in range(count)]
    return np.stack([fit(photograph(name), height, width) for name in names])
