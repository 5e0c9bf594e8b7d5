"""SSIM in the fidelity reports: 1 for identical pictures, clearly lower for a degraded one, the worst one wins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from prodgen.export.fidelity import describe_ssim, lowest_of, lowest_ssim, ssim_text
from prodgen.export.verify import compare_outputs
from prodgen.photos import photo_batch


def degraded(pictures: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, pictures.shape)
    return np.clip(pictures.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)


def test_identical_photos_score_one_and_a_noisy_one_clearly_lower() -> None:
    photos = photo_batch(2, 96, 128)
    assert lowest_ssim(photos, photos.copy()) == 1.0
    noisy = lowest_ssim(photos, degraded(photos, sigma=25.0))
    assert noisy is not None and noisy < 0.6
    slightly = lowest_ssim(photos, degraded(photos, sigma=2.0))
    assert slightly is not None and 0.9 < slightly < 1.0


def test_the_least_similar_picture_of_a_batch_is_reported_as_wang_et_al_define_ssim() -> None:
    photos = photo_batch(3, 80, 80)
    candidate = photos.copy()
    candidate[1] = degraded(photos[1:2], sigma=12.0)[0]
    # Wang et al. 2004: 11×11 gaussian window with σ 1.5, population covariances, per colour channel
    expected = structural_similarity(
        photos[1], candidate[1], data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip
    assert lowest_ssim(photos, candidate) == expected < 0.95


def test_float_outputs_are_scored_per_plane_over_their_data_range() -> None:
    rng = np.random.default_rng(1)
    latents = rng.standard_normal((2, 4, 16, 16)).astype(np.float32) * 5.0
    assert lowest_ssim(latents, latents.copy()) == 1.0
    shifted = latents.copy()
    shifted[1, 2] += 2.0  # one channel of one latent moved by a fifth of the data range
    score = lowest_ssim(latents, shifted)
    assert score is not None and score < 0.99
    assert lowest_ssim(latents * 10, shifted * 10) == pytest.approx(score, rel=1e-6)  # relative to the data range


def test_outputs_smaller_than_the_window_have_no_ssim_and_say_so() -> None:
    small = np.zeros((1, 4, 8, 8), dtype=np.float32)
    assert lowest_ssim(small, small) is None
    assert describe_ssim(None) == "SSIM n/a (outputs smaller than its 11×11 window)"
    assert lowest_of([None, 0.97, None, 0.99]) == 0.97
    assert lowest_of([None]) is None
    assert math.isnan(lowest_of([0.99, float("nan")]) or 0.0)  # an output gone non-finite is not hidden


def test_export_parity_reports_the_lowest_ssim() -> None:
    photos = photo_batch(2, 64, 64)
    noisy = degraded(photos, sigma=1.0)
    parity = compare_outputs([photos], [noisy], required_fraction=0.9)
    assert parity.lowest_ssim == lowest_ssim(photos, noisy)
    assert f"lowest SSIM {ssim_text(parity.lowest_ssim)}" in parity.describe()


def test_printed_ssim_is_rounded_down_so_a_near_miss_never_reads_as_perfect() -> None:
    assert ssim_text(0.99999988) == "0.99999"
    assert ssim_text(1.0) == "1.00000"
    assert ssim_text(None) == "n/a" and ssim_text(float("nan")) == "nan"
