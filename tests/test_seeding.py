from __future__ import annotations

import numpy as np

from prodgen.seeding import latent_from_seed, latents_from_seed


def test_same_seed_same_latent_and_image_i_uses_seed_plus_i() -> None:
    batch = latents_from_seed(40, 3, 128)
    assert batch.dtype == np.float32 and batch.shape == (3, 128)
    for i in range(3):
        assert np.array_equal(batch[i], latent_from_seed(40 + i, 128))
    assert not np.array_equal(batch[0], batch[1])


def test_latents_are_standard_normal() -> None:
    values = latents_from_seed(0, 200, 512).ravel()
    assert abs(values.mean()) < 0.01
    assert abs(values.std() - 1.0) < 0.01
    assert abs(np.mean(np.abs(values) < 1.0) - 0.6827) < 0.005
