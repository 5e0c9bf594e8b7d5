"""Serving graphs of the cutout family: photo uint8 (N, H, W, 3) -> matte uint8 (N, H, W, 1).

Upstream's whole inference script runs inside the graph: the resize to the network's side,
the normalisation, the network, the min-max stretch of the first output, the resize back to
the photo's size and the conversion to 8 bits, each the way upstream's script does it, so a
served matte matches what upstream's own script writes for the same photo.

Resizes whose filter ONNX's `Resize` cannot express (scikit-image's Gaussian anti-aliasing,
PIL's 8-bit bilinear with its support widened when shrinking), or not in PyTorch's arithmetic,
are written as one resampling matrix per axis, computed in the graph from the photo's side,
applied as two matmuls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY = 1e-12


def _side(image: torch.Tensor, dim: int) -> torch.Tensor:
    """A side of `image` as a float scalar tensor, so traced arithmetic on it stays dynamic."""
    return torch._shape_as_tensor(image)[dim].to(torch.float32)


def _indices(count: torch.Tensor) -> torch.Tensor:
    """0, 1, …, count - 1 as float32, `count` a traced size (an ONNX Range on the photo's side)."""
    return torch.arange(count.to(torch.int64), dtype=torch.float32)  # type: ignore[call-overload]


def skimage_resize_matrix(in_side: torch.Tensor, out_side: int) -> torch.Tensor:
    """(out_side, in_side) weights of scikit-image's `transform.resize(..., mode='constant')` on one
    axis (order 1, anti_aliasing on when shrinking): a Gaussian of sigma (in/out - 1)/2 truncated
    at 4 sigma with zero padding (`ndi.gaussian_filter`), then linear interpolation at half-pixel
    centres reading zeros beyond the edge (`ndi.zoom(..., grid_mode=True)`, 'grid-constant')."""
    scale = in_side / out_side
    sigma = torch.clamp((scale - 1.0) / 2.0, min=0.0)
    radius = torch.floor(4.0 * sigma + 0.5)
    inverse_variance = 1.0 / torch.clamp(sigma * sigma, min=TINY)
    # position = (i + 0.5)·in/out - 0.5, kept as an integer over 2·out so float32 holds it exactly
    numerator = (2.0 * torch.arange(out_side, dtype=torch.float32) + 1.0) * in_side - out_side
    left = torch.floor(numerator / (2 * out_side))
    fraction = ((numerator - left * (2 * out_side)) / (2 * out_side)).reshape(-1, 1)
    columns = _indices(in_side).reshape(1, -1)
    last = in_side - 1.0

    def gaussian(distance: torch.Tensor) -> torch.Tensor:
        weight = torch.exp(-0.5 * inverse_variance * distance * distance)
        return weight * (distance.abs() <= radius).to(torch.float32)

    whole = _indices(in_side * 2 + 1) - in_side
    norm = gaussian(whole).sum()
    left_column = left.reshape(-1, 1)
    inside_left = ((left_column >= 0) & (left_column <= last)).to(torch.float32)
    inside_right = ((left_column + 1 >= 0) & (left_column + 1 <= last)).to(torch.float32)
    weights = (1.0 - fraction) * inside_left * gaussian(left_column - columns)
    weights = weights + fraction * inside_right * gaussian(left_column + 1.0 - columns)
    return weights / norm


def pil_bilinear_matrix(in_side: int, out_side: torch.Tensor) -> torch.Tensor:
    """(out_side, in_side) weights of PIL's `Image.resize(..., BILINEAR)` on one axis: a triangle
    filter at half-pixel centres, widened by the scale when shrinking, normalised per output pixel."""
    # (centre - column) / filter scale with centre (i + 0.5)·in/out, column j + 0.5 and filter scale
    # max(in/out, 1), as one integer numerator over 2·max(in, out) so float32 holds it exactly
    outputs = 2.0 * _indices(out_side).reshape(-1, 1) + 1.0
    inputs = 2.0 * torch.arange(in_side, dtype=torch.float32).reshape(1, -1) + 1.0
    distance = (outputs * in_side - inputs * out_side).abs() / (2.0 * torch.clamp(out_side, min=float(in_side)))
    weights = torch.clamp(1.0 - distance, min=0.0)
    return weights / weights.sum(dim=1, keepdim=True)


def torch_bilinear_matrix(in_side: int, out_side: torch.Tensor) -> torch.Tensor:
    """(out_side, in_side) weights of PyTorch's `F.interpolate(..., mode='bilinear', align_corners=False)`
    (no anti-aliasing) on one axis, in its own float32 arithmetic: scale in/out, source
    scale·(i + 0.5) - 0.5 clamped at 0, between its two neighbours (the last repeated at the edge).
    ONNX Runtime's `Resize` computes the source coordinates otherwise (up to 1e-4 apart)."""
    scale = in_side / out_side
    source = torch.clamp(scale * (_indices(out_side) + 0.5) - 0.5, min=0.0).reshape(-1, 1)
    left = torch.floor(source)
    fraction = torch.clamp(source - left, 0.0, 1.0)
    right = torch.clamp(left + 1.0, max=float(in_side - 1))
    columns = torch.arange(in_side, dtype=torch.float32).reshape(1, -1)
    return (1.0 - fraction) * (columns == left).to(torch.float32) + fraction * (columns == right).to(torch.float32)


def per_image(x: torch.Tensor, reduce: str) -> torch.Tensor:
    """Min or max over all but the batch dimension, kept broadcastable."""
    flat = x.reshape(x.shape[0], -1)
    value = flat.amin(dim=1) if reduce == "min" else flat.amax(dim=1)
    return value.reshape(-1, *([1] * (x.dim() - 1)))


def min_max_stretch(x: torch.Tensor) -> torch.Tensor:
    """U²-Net's `normPRED` (and IS-Net's inference) per image: (x - min) / (max - min)."""
    low, high = per_image(x, "min"), per_image(x, "max")
    return (x - low) / torch.clamp(high - low, min=TINY)


def round_to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """Round half up, as PIL's fixed-point resampling does (not half to even), and clip to 0..255."""
    return torch.clamp(torch.floor(x + 0.5), 0.0, 255.0)


class U2NetCutout(nn.Module):
    """U²-Net's `u2net_test.py` as a graph: `RescaleT(320)` (scikit-image resize, anti-aliased),
    `ToTensorLab(flag=0)` (divide by the resized photo's maximum, ImageNet normalisation), the
    network's first output (the fused map), `normPRED`, ×255 truncated to an 8-bit picture (PIL's
    'F' to 'RGB' conversion), PIL bilinear
    resize back to the photo's size (two 8-bit passes, rows first: measured closest to
    Pillow 13's own output, within one level everywhere)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, network: nn.Module, side: int = 320) -> None:
        super().__init__()
        self.network = network
        self.side = side
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def network_input(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> the normalised (N, 3, side, side) batch upstream feeds the network."""
        x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        rows = skimage_resize_matrix(_side(x, 2), self.side)
        columns = skimage_resize_matrix(_side(x, 3), self.side)
        resized = torch.matmul(torch.matmul(rows, x), columns.transpose(0, 1))
        resized = torch.minimum(torch.maximum(resized, per_image(x, "min")), per_image(x, "max"))  # resize's clip
        resized = resized / torch.clamp(per_image(resized, "max"), min=TINY)
        return (resized - self.mean) / self.std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        probability = self.network(self.network_input(image))[0]
        matte = torch.clamp(torch.floor(min_max_stretch(probability) * 255.0), 0.0, 255.0)
        rows = pil_bilinear_matrix(self.side, _side(image, 1))
        columns = pil_bilinear_matrix(self.side, _side(image, 2))
        matte = round_to_uint8_levels(torch.matmul(rows, matte))
        matte = round_to_uint8_levels(torch.matmul(matte, columns.transpose(0, 1)))
        return matte.to(torch.uint8).permute(0, 2, 3, 1)


class ISNetCutout(nn.Module):
    """DIS's `Inference.py` as a graph: bilinear resize to 1024² (no anti-aliasing) truncated to
    uint8, /255, normalise with mean 0.5 and std 1, the network's first output, bilinear resize
    back to the photo's size, min-max stretch, ×255 truncated to uint8 (`astype(np.uint8)`)."""

    def __init__(self, network: nn.Module, side: int = 1024) -> None:
        super().__init__()
        self.network = network
        self.side = side

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
        x = torch.floor(torch.clamp(x, 0.0, 255.0)) / 255.0 - 0.5
        probability = self.network(x)[0]
        rows = torch_bilinear_matrix(self.side, _side(image, 1))
        columns = torch_bilinear_matrix(self.side, _side(image, 2))
        back = torch.matmul(torch.matmul(rows, probability), columns.transpose(0, 1))
        matte = torch.clamp(torch.floor(min_max_stretch(back) * 255.0), 0.0, 255.0)
        return matte.to(torch.uint8).permute(0, 2, 3, 1)
