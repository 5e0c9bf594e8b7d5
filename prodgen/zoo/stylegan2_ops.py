"""Pure-PyTorch versions of StyleGAN2's CUDA ops (rosinality/stylegan2-pytorch `op/`).

Upstream runs `fused_leaky_relu` and `upfirdn2d` as CUDA extensions on the GPU and falls
back to plain PyTorch on the CPU; these follow that CPU path, so they trace to standard
ONNX ops (Pad, Conv, LeakyRelu, Slice) that ONNX Runtime and TensorRT both run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """leaky_relu(x + bias, 0.2) · √2, the bias broadcast over channel axis 1."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope=LEAKY_SLOPE) * LEAKY_GAIN


class FusedLeakyReLU(nn.Module):
    """Upstream `FusedLeakyReLU`: a per-channel `bias` parameter, then `fused_leaky_relu`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter with `kernel`, then keep every `down`-th pixel.

    The filter is a true convolution (the kernel flipped, as upstream), each channel on its
    own; `pad` = (before, after) on both axes, negative values crop.
    """
    # Channels and kernel size are fixed per layer: plain ints keep the ONNX conv kernel static.
    channels, height, width = int(x.shape[1]), x.shape[2], x.shape[3]
    before, after = pad
    kernel_h, kernel_w = int(kernel.shape[0]), int(kernel.shape[1])
    out = x
    if up > 1:
        out = F.pad(x.reshape(-1, channels, height, 1, width, 1), (0, up - 1, 0, 0, 0, up - 1))
        out = out.reshape(-1, channels, height * up, width * up)
    out = F.pad(out, (max(before, 0), max(after, 0), max(before, 0), max(after, 0)))
    crop_before, crop_after = max(-before, 0), max(-after, 0)
    if crop_before or crop_after:
        out = out[:, :, crop_before : out.shape[2] - crop_after, crop_before : out.shape[3] - crop_after]
    flipped = torch.flip(kernel, [0, 1]).to(out.dtype).expand(channels, 1, kernel_h, kernel_w)
    out = F.conv2d(out, flipped, groups=channels)
    return out[:, :, ::down, ::down] if down > 1 else out
