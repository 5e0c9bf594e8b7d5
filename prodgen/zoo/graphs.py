"""Serving graphs: the served contract (uint8 NHWC RGB) wrapped around a zoo network.

Normalisation, layout changes, rounding and clamping are part of the exported graph, so
every client sends and receives plain uint8 images and no client can get them wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ValueRange = tuple[float, float]


def uint8_nhwc_to_float(image: torch.Tensor, value_range: ValueRange) -> torch.Tensor:
    """uint8 (N, H, W, 3) in 0..255 to float (N, 3, H, W) in `value_range`."""
    low, high = value_range
    x = image.permute(0, 3, 1, 2).to(torch.float32)
    return x * ((high - low) / 255.0) + low


def float_to_uint8_nhwc(x: torch.Tensor, value_range: ValueRange) -> torch.Tensor:
    """float (N, 3, H, W) in `value_range` to uint8 (N, H, W, 3), rounded and clamped."""
    low, high = value_range
    scaled = (x - low) * (255.0 / (high - low))
    return scaled.round().clamp(0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1)


class LatentToImage(nn.Module):
    """z (N, z_dim) FP32 -> image uint8 (N, H, W, 3), for DCGAN-style generators taking (N, z, 1, 1).

    Inputs after `z` (a class id, say) are passed to the network unchanged, after `z`.
    """

    def __init__(self, network: nn.Module, output_range: ValueRange = (-1.0, 1.0)) -> None:
        super().__init__()
        self.network = network
        self.output_range = output_range

    def forward(self, z: torch.Tensor, *conditions: torch.Tensor) -> torch.Tensor:
        y = self.network(z.reshape(z.shape[0], z.shape[1], 1, 1), *conditions)
        return float_to_uint8_nhwc(y, self.output_range)


class MappedLatentToImage(nn.Module):
    """z (N, z_dim) FP32 and (N, 1) FP32 controls such as truncation -> image uint8 (N, H, W, 3),
    for style-based generators that take z as a flat vector (StyleGAN2's mapping network)."""

    def __init__(self, network: nn.Module, output_range: ValueRange = (-1.0, 1.0)) -> None:
        super().__init__()
        self.network = network
        self.output_range = output_range

    def forward(self, z: torch.Tensor, *controls: torch.Tensor) -> torch.Tensor:
        return float_to_uint8_nhwc(self.network(z, *controls), self.output_range)


class ImageToImage(nn.Module):
    """image uint8 (N, H, W, 3) -> image uint8 (N, H·s, W·s, 3).

    Networks that downsample need sides divisible by `multiple_of`; any other size is
    reflect-padded up to the next multiple inside the graph and the result cropped back,
    so callers may send any size within the model's bounds.
    """

    def __init__(
        self,
        network: nn.Module,
        input_range: ValueRange,
        output_range: ValueRange,
        multiple_of: int = 1,
        scale: int = 1,
    ) -> None:
        super().__init__()
        self.network = network
        self.input_range = input_range
        self.output_range = output_range
        self.multiple_of = multiple_of
        self.scale = scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = uint8_nhwc_to_float(image, self.input_range)
        height, width = x.shape[2], x.shape[3]
        if self.multiple_of > 1:
            pad_h = (self.multiple_of - height % self.multiple_of) % self.multiple_of
            pad_w = (self.multiple_of - width % self.multiple_of) % self.multiple_of
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        y = self.network(x)
        if self.multiple_of > 1:
            y = y[:, :, : height * self.scale, : width * self.scale]
        return float_to_uint8_nhwc(y, self.output_range)
