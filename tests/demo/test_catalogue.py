"""The demo's rendered product catalogue is reproducible from its seed: the generator's
training data is the same on every machine."""

from __future__ import annotations

import numpy as np

from demo.catalogue import CATEGORIES, SIDE, catalogue


def test_a_seed_gives_the_same_catalogue() -> None:
    first_images, first_labels = catalogue(3, seed=7)
    second_images, second_labels = catalogue(3, seed=7)
    assert first_images.shape == (3 * len(CATEGORIES), SIDE, SIDE, 3)
    assert np.array_equal(first_images, second_images) and np.array_equal(first_labels, second_labels)
    assert np.bincount(first_labels).tolist() == [3] * len(CATEGORIES)


def test_another_seed_gives_other_pictures() -> None:
    assert not np.array_equal(catalogue(2, seed=1)[0], catalogue(2, seed=2)[0])
