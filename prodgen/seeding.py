"""Latents from seeds that are identical on every machine and every numpy version.

numpy's `Generator` distributions may change between numpy releases; its bit generators
may not. So latents come from PCG64's raw 64-bit stream through a Box–Muller transform
written here. Image *i* of a request for seed *s* uses seed *s + i*, so any single image
of a grid can be reproduced alone. A sampler that injects fresh noise at each step draws
step *k*'s noise for seed *s* as `latent_from_seed(derived_seed(s, k), size)`.
"""

from __future__ import annotations

import numpy as np

_TWO_POW_53 = float(2**53)


def _uniform_open(seed: int, count: int) -> np.ndarray:
    raw = np.random.PCG64(seed).random_raw(count)
    return ((raw >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO_POW_53


def latent_from_seed(seed: int, dim: int) -> np.ndarray:
    """A standard-normal FP32 vector of length `dim`, fixed by `seed`."""
    if seed < 0:
        raise ValueError("seed must be >= 0")
    pairs = (dim + 1) // 2
    uniform = _uniform_open(seed, 2 * pairs)
    radius = np.sqrt(-2.0 * np.log(uniform[0::2]))
    angle = 2.0 * np.pi * uniform[1::2]
    normal = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
    return normal[:dim].astype(np.float32)


def latents_from_seed(seed: int, count: int, dim: int) -> np.ndarray:
    """A (count, dim) FP32 batch: row i is `latent_from_seed(seed + i, dim)`."""
    return np.stack([latent_from_seed(seed + i, dim) for i in range(count)])


def derived_seed(seed: int, stream: int) -> int:
    """A seed for the `stream`-th independent stream of `seed` (e.g. the noise a sampler injects at a step).

    numpy's SeedSequence spawning (entropy `seed`, spawn key `(stream,)`) is a documented, versioned hash,
    so the result is the same on every machine and numpy release."""
    if seed < 0 or stream < 0:
        raise ValueError("seed and stream must be >= 0")
    state = np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1, np.uint64)
    return int(state[0])
