"""Tiled upscaling: the same pixels as one pass where both fit, in bounded memory.

The exactness tests run real exported upscalers (small SRVGGNetCompact and RRDBNet) through
ONNX Runtime; the layout tests use small numpy models whose receptive field is known.
"""

from __future__ import annotations

import dataclasses
import itertools
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prodgen import zoo
from prodgen.client.tiling import Infer, Tiling, axis_weights, iter_bands, tile_spans, upscale_tiled
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import onnx_session
from prodgen.photos import fit, photograph
from prodgen.zoo.loading import serving_module
from prodgen.zoo.rrdbnet import RRDBNet
from prodgen.zoo.samples import sample_inputs
from prodgen.zoo.srvgg import SRVGGNetCompact


def box_blur_upscaler(radius: int, scale: int) -> Infer:
    """A numpy 'model' whose output pixel depends on input pixels up to `radius` away
    (repeated 3×3 box blurs with zero padding, like convolutions), then nearest upsampling."""

    def infer(batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float64)
        for _ in range(radius):
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            total = np.zeros_like(x)
            for dy in range(3):
                for dx in range(3):
                    total += padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]]
            x = total / 9
        x = np.clip(np.rint(x * 1.1 - 10), 0, 255).astype(np.uint8)
        return x.repeat(scale, axis=1).repeat(scale, axis=2)

    return infer


def photo(height: int, width: int) -> np.ndarray:
    return fit(photograph("astronaut"), height, width)


@pytest.mark.parametrize(
    "tiling",
    [
        Tiling(tile=32, overlap=16, blend=8, batch=3),
        Tiling(tile=40, overlap=20, blend=0, batch=1),
        Tiling(tile=24, overlap=12, blend=4, multiple_of=4),
        Tiling(tile=36, overlap=21, blend=4, batch=2),
    ],
)
def test_tiles_reproduce_one_pass_when_the_context_covers_the_receptive_field(tiling: Tiling) -> None:
    infer = box_blur_upscaler(radius=int(tiling.context), scale=2)
    image = photo(83, 101)
    assert np.array_equal(upscale_tiled(image, infer, 2, tiling), infer(image[None])[0])


def test_too_little_context_shows_seams() -> None:
    """The exactness above is not vacuous: a receptive field wider than the context differs."""
    infer = box_blur_upscaler(radius=8, scale=2)
    image = photo(83, 101)
    tiled = upscale_tiled(image, infer, 2, Tiling(tile=32, overlap=8, blend=4))
    assert not np.array_equal(tiled, infer(image[None])[0])


@pytest.mark.parametrize("length", [1, 31, 32, 33, 100, 257])
def test_spans_cover_the_axis_with_enough_overlap_on_the_grid(length: int) -> None:
    tiling = Tiling(tile=32, overlap=12, multiple_of=4)
    spans = tile_spans(length, tiling)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(0 < end - start <= 32 and start % 4 == 0 for start, end in spans)
    assert all(following[0] < previous[0] + 32 - 11 for previous, following in itertools.pairwise(spans))
    weights = axis_weights(spans, length, 3, tiling)
    total = np.zeros(length * 3)
    for (start, end), weight in zip(spans, weights, strict=True):
        assert weight.shape == ((end - start) * 3,) and weight.min() >= 0
        total[start * 3 : end * 3] += weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_a_4000_by_4000_photo_goes_through_in_bounded_memory() -> None:
    image = photo(4000, 4000)
    seen: list[tuple[int, ...]] = []

    def identity(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return batch.copy()

    tiling = Tiling(tile=512, overlap=32, batch=4)
    out = np.empty_like(image)
    tracemalloc.start()
    try:
        upscale_tiled(image, identity, 1, tiling, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(out, image)
    assert max(shape[0] for shape in seen) <= 4 and max(max(shape[1:3]) for shape in seen) <= 512
    band_bytes = 512 * 4000 * 3 * 4
    assert peak < 3 * band_bytes < image.size * 4 / 2  # a few rows of tiles, not the whole image in float32


def test_bands_come_in_order_and_a_wrong_model_is_named() -> None:
    image = photo(70, 50)
    bands = list(iter_bands(image, box_blur_upscaler(1, 2), 2, Tiling(tile=32, overlap=8)))
    firsts = [first for first, _ in bands]
    assert firsts[0] == 0 and sum(rows.shape[0] for _, rows in bands) == 140
    assert all(a + rows.shape[0] == b for (a, rows), b in zip(bands, firsts[1:], strict=False))
    with pytest.raises(ProdgenError, match=r"expected uint8 .* \(scale 4\)"):
        upscale_tiled(image, box_blur_upscaler(1, 2), 4, Tiling(tile=32, overlap=8))


def onnx_upscaler(name: str, network: Callable[[], nn.Module], tmp_path: Path) -> Infer:
    """A real exported upscaler (seeded weights) as an `infer` callable over ONNX Runtime.
    RRDBNet's last convolution is rescaled so that its outputs lie mostly inside 0..1 and
    the comparison is between real pixel values, not clamped ones."""
    model = dataclasses.replace(zoo.get(name), build=network)
    graph = serving_module(model, seed=3)
    built = graph.network
    if isinstance(built, RRDBNet):
        last = built.conv_last
        assert last.bias is not None
        probe = torch.tensor(fit(photograph("chelsea"), 64, 64)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            last.bias.zero_()
            output = built(probe)
            gain = 0.15 / output.std(dim=(0, 2, 3)).clamp_min(1e-6)
            last.weight.mul_(gain.reshape(-1, 1, 1, 1))
            last.bias.copy_(0.5 - output.mean(dim=(0, 2, 3)) * gain)
    export_onnx(graph, model, sample_inputs(model, batch=1, height=48), tmp_path / "model.onnx")
    session = onnx_session(tmp_path / "model.onnx")
    return lambda batch: session.run(None, {"input_image": batch})[0]


@pytest.mark.parametrize(
    ("name", "network", "scale", "tiling"),
    [
        # 4 + 2 convolutions: receptive field 6 input pixels; context (32 - 16) / 2 = 8
        (
            "realesr-general-x4v3",
            partial(SRVGGNetCompact, num_feat=16, num_conv=4, upscale=4),
            4,
            Tiling(tile=64, overlap=32, blend=16, batch=2),
        ),
        # pixel-unshuffled ×2 with one RRDB: about 40 input pixels; context (104 - 16) / 2 = 44
        (
            "realesrgan-x2",
            partial(RRDBNet, scale=2, num_feat=16, num_block=1, num_grow_ch=8),
            2,
            Tiling(tile=128, overlap=104, blend=16, batch=3, multiple_of=2),
        ),
    ],
    ids=["srvgg-x4", "rrdbnet-x2"],
)
def test_exported_upscaler_tiled_matches_one_pass(
    tmp_path: Path, name: str, network: Callable[[], nn.Module], scale: int, tiling: Tiling
) -> None:
    infer = onnx_upscaler(name, network, tmp_path)
    image = fit(photograph("coffee"), 151, 203)
    single = infer(image[None])[0]
    tiled = upscale_tiled(image, infer, scale, tiling)
    assert len(tile_spans(151, tiling)) > 1 and len(tile_spans(203, tiling)) > 1
    diff = np.abs(tiled.astype(int) - single.astype(int))
    assert np.mean(diff <= 1) >= 0.999, (np.mean(diff == 0), diff.max())
    assert np.mean((single > 0) & (single < 255)) > 0.9
