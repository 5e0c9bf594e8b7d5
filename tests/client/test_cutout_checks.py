"""The matte check `prodgen cutout` runs before writing (and restage before using a matte), and
the client's refusals of a model that is no cutout model."""

from __future__ import annotations

import numpy as np
import pytest

from prodgen.client.api import ServedModel, cutout_inputs
from prodgen.contract import ImageBounds, TensorSpec, image_spec
from prodgen.errors import ProdgenError
from prodgen.matte_checks import check_matte, coverage, touched_sides


def matte(height: int = 100, width: int = 200) -> np.ndarray:
    return np.zeros((height, width), dtype=np.uint8)


def test_a_product_in_the_middle_passes() -> None:
    product = matte()
    product[20:90, 60:140] = 255
    assert check_matte(product) == [] and coverage(product) == pytest.approx(0.28)
    assert check_matte(product[..., np.newaxis]) == []


def test_a_product_cut_at_one_side_passes() -> None:
    bottle = matte()
    bottle[30:, 80:120] = 255  # runs off the bottom only
    assert touched_sides(bottle) == ["bottom"] and check_matte(bottle) == []


def test_almost_nothing_is_reported_with_its_coverage() -> None:
    speck = matte()
    speck[50:52, 100:150] = 200  # 100 of 20,000 pixels
    assert check_matte(speck) == ["the product covers 0.50% of the photo, expected at least 1%"]


def test_almost_everything_is_reported_with_coverage_and_sides() -> None:
    everything = np.full((100, 200), 255, dtype=np.uint8)
    everything[:3, :] = 0
    assert check_matte(everything) == [
        "the product covers 97.00% of the photo, expected at most 95%",
        "the product touches the frame on 3 sides (bottom, left, right), expected at most 1",
    ]


def test_a_band_across_the_frame_is_reported() -> None:
    band = matte()
    band[40:60, :] = 255
    assert check_matte(band) == ["the product touches the frame on 2 sides (left, right), expected at most 1"]


def test_half_transparent_pixels_are_not_product() -> None:
    shadow = matte()
    shadow[:, :] = 127
    shadow[30:70, 80:120] = 128
    assert coverage(shadow) == pytest.approx(0.08) and check_matte(shadow) == []


def test_a_matte_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"uint8 \(H, W\) or \(H, W, 1\), not float32 \(10, 10\)"):
        check_matte(np.zeros((10, 10), dtype=np.float32))


def served(task: str) -> ServedModel:
    return ServedModel(
        name="m",
        task=task,
        inputs=(image_spec("image"),),
        outputs=(TensorSpec("matte", "UINT8", (-1, -1, 1)),),
        max_batch_size=4,
        bounds=ImageBounds(min_side=16, max_side=4096, opt_side=320),
    )


def test_cutout_inputs_check_the_task_and_the_photo() -> None:
    photo = np.zeros((40, 50, 3), dtype=np.uint8)
    assert cutout_inputs(served("cutout"), photo)["image"].shape == (1, 40, 50, 3)
    with pytest.raises(ProdgenError, match=r"model 'm' is a style model, not a cutout model; use `prodgen stylize`"):
        cutout_inputs(served("stylize"), photo)
    with pytest.raises(ProdgenError, match="image: height 8 is outside the model's bounds 16..4096 pixels"):
        cutout_inputs(served("cutout"), np.zeros((8, 50, 3), dtype=np.uint8))
