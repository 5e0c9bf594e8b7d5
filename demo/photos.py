"""Which of scikit-image's bundled photographs the demo trains on and which it holds out.

Licences as scikit-image's `skimage.data` docstrings state them. The held-out photos are
never used in training; `examples/photos/coffee.jpg` and `chelsea.jpg` are the same
photographs downscaled, so the demo shows the networks on pictures they never saw.
"""

from __future__ import annotations

import numpy as np

from prodgen.photos import photograph

TRAIN_PHOTOS: dict[str, str] = {
    "astronaut": "NASA, public domain",
    "rocket": "SpaceX, public domain",
    "hubble_deep_field": "NASA, public domain",
    "immunohistochemistry": "CMMI, no known copyright restrictions",
    "retina": "Mikael Häggström, CC0 1.0",
}
HELD_OUT_PHOTOS: dict[str, str] = {
    "coffee": "Rachel Michetti, CC0",
    "chelsea": "Stefan van der Walt, CC0",
}


def train_photos() -> list[np.ndarray]:
    """The training photographs as uint8 RGB (H, W, 3)."""
    return [photograph(name) for name in TRAIN_PHOTOS]


def random_crop(rng: np.random.Generator, photos: list[np.ndarray], side: int) -> np.ndarray:
    """A side×side crop of a random photo at a random position, randomly flipped and rotated."""
    photo = photos[rng.integers(len(photos))]
    top = rng.integers(photo.shape[0] - side + 1)
    left = rng.integers(photo.shape[1] - side + 1)
    crop = photo[top : top + side, left : left + side]
    if rng.integers(2):
        crop = crop[:, ::-1]
    return np.ascontiguousarray(np.rot90(crop, k=int(rng.integers(4))))
