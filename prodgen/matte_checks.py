"""Is a cutout matte fit to use? One check, shared by `prodgen cutout` and restage.

A cutout model always answers, even for a photo without a clear product: then the matte
covers almost nothing, almost everything, or a band across the frame. Such a matte is
reported (and restage refuses it unless forced), never silently used. The check reads
the matte alone and imports numpy only: export publishes this file beside the served restage
model's `model.py` (model_repository/stable_diffusion.py), so the server refuses exactly what
`prodgen cutout` reports.
"""

from __future__ import annotations

import numpy as np

PRODUCT_LEVEL = 128
"""Matte values at or above this count as product (at least half opaque)."""
MIN_COVERAGE = 0.01
MAX_COVERAGE = 0.95
"""The product's share of the photo, outside which the matte is reported."""
EDGE_SHARE = 0.02
"""A frame side counts as touched when at least this share of its pixels is product (a stray pixel is not)."""
MAX_TOUCHED_SIDES = 1
"""A product may run off one side (a bottle cut at the bottom); touching two or more is reported."""


def coverage(matte: np.ndarray) -> float:
    """The share of the photo's pixels that are product."""
    return float(np.mean(_plane(matte) >= PRODUCT_LEVEL))


def touched_sides(matte: np.ndarray) -> list[str]:
    """The frame sides ('top', 'bottom', 'left', 'right') the product touches."""
    product = _plane(matte) >= PRODUCT_LEVEL
    edges = {"top": product[0], "bottom": product[-1], "left": product[:, 0], "right": product[:, -1]}
    return [side for side, edge in edges.items() if edge.mean() >= EDGE_SHARE]


def check_matte(matte: np.ndarray) -> list[str]:
    """What is wrong with `matte` (uint8 (H, W) or (H, W, 1), 255 = product), one phrase each; [] if nothing."""
    problems = []
    share = coverage(matte)
    if share < MIN_COVERAGE:
        problems.append(f"the product covers {share:.2%} of the photo, expected at least {MIN_COVERAGE:.0%}")
    elif share > MAX_COVERAGE:
        problems.append(f"the product covers {share:.2%} of the photo, expected at most {MAX_COVERAGE:.0%}")
    sides = touched_sides(matte)
    if len(sides) > MAX_TOUCHED_SIDES:
        problems.append(
            f"the product touches the frame on {len(sides)} sides ({', '.join(sides)}), "
            f"expected at most {MAX_TOUCHED_SIDES}"
        )
    return problems


def _plane(matte: np.ndarray) -> np.ndarray:
    if matte.ndim == 3 and matte.shape[2] == 1:
        matte = matte[:, :, 0]
    if matte.ndim != 2 or matte.dtype != np.uint8 or matte.size == 0:
        raise ValueError(f"a matte is uint8 (H, W) or (H, W, 1), not {matte.dtype} {matte.shape}")
    return matte
