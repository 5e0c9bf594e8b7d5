"""The residual U-blocks (RSU) of U²-Net (Qin et al. 2020), shared by U²-Net, U²-NetP and IS-Net.

Module names follow xuebinqin/U-2-Net `model/u2net.py` (and DIS `models/isnet.py`, which has the
same blocks), so their `state_dict`s load unchanged: an RSU-L block holds `rebnconvin`,
`rebnconv1`…`rebnconvL` (the last one dilated by 2), `pool1`…`pool{L-2}` (no parameters) and
the decoder convolutions `rebnconv{L-1}d`…`rebnconv1d`; each `REBNCONV` is `conv_s1` (3×3),
`bn_s1` (batch norm) and a ReLU. RSU-4F keeps the resolution and dilates by 1, 2, 4, 8
instead of pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class REBNCONV(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, dirate: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate, stride=stride)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


def upsample_like(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Upstream's `_upsample_like`: bilinear, half-pixel centres (F.upsample's default)."""
    return F.interpolate(source, size=target.shape[2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """RSU-`height` (7, 6, 5 or 4): a small U-Net of `height - 2` poolings inside a residual block."""

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        for level in range(1, height - 1):
            self.add_module(f"pool{level}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
            self.add_module(f"rebnconv{level + 1}", REBNCONV(mid_ch, mid_ch))
        self.add_module(f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dirate=2))
        for level in range(height - 1, 1, -1):
            self.add_module(f"rebnconv{level}d", REBNCONV(mid_ch * 2, mid_ch))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = [self.rebnconv1(hxin)]
        for level in range(1, self.height - 1):
            pooled = self.get_submodule(f"pool{level}")(skips[-1])
            skips.append(self.get_submodule(f"rebnconv{level + 1}")(pooled))
        hx = self.get_submodule(f"rebnconv{self.height}")(skips[-1])
        for level in range(self.height - 1, 0, -1):
            hx = self.get_submodule(f"rebnconv{level}d")(torch.cat((hx, skips[level - 1]), 1))
            if level > 1:
                hx = upsample_like(hx, skips[level - 2])
        return hx + hxin


class RSU4F(nn.Module):
    """RSU-4F: dilations 1, 2, 4, 8 at one resolution, for the coarsest stages."""

    DILATIONS = (1, 2, 4, 8)

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dirate=4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dirate=2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        return self.rebnconv1d(torch.cat((hx2d, hx1), 1)) + hxin


Widths = tuple[int, int, int]
"""(in, mid, out) channels of one stage."""

ENCODER_HEIGHTS = (7, 6, 5, 4, 0, 0)
DECODER_HEIGHTS = (0, 4, 5, 6, 7)
"""RSU height of each encoder stage (stage1…stage6) and decoder stage (stage5d…stage1d); 0: RSU-4F."""


def rsu(height: int, widths: Widths) -> nn.Module:
    return RSU4F(*widths) if height == 0 else RSU(height, *widths)


class U2NetBody(nn.Module):
    """Six encoder stages, five decoder stages and six 3×3 side convolutions (`side1`…`side6`):
    what U²-Net, U²-NetP and IS-Net share. `side_logits` returns d1…d6 before the sigmoid,
    each at its own stage's resolution."""

    def __init__(self, encoder: tuple[Widths, ...], decoder: tuple[Widths, ...]) -> None:
        super().__init__()
        for index, (height, widths) in enumerate(zip(ENCODER_HEIGHTS, encoder, strict=True), start=1):
            self.add_module(f"stage{index}", rsu(height, widths))
            if index < len(encoder):
                self.add_module(f"pool{index}{index + 1}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
        for index, height, widths in zip(range(5, 0, -1), DECODER_HEIGHTS, decoder, strict=True):
            self.add_module(f"stage{index}d", rsu(height, widths))
        side_channels = [widths[2] for widths in reversed(decoder)] + [encoder[-1][2]]
        for index, channels in enumerate(side_channels, start=1):
            self.add_module(f"side{index}", nn.Conv2d(channels, 1, 3, padding=1))

    def side_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        hx = x
        for index in range(1, 7):
            if index > 1:
                hx = self.get_submodule(f"pool{index - 1}{index}")(hx)
            hx = self.get_submodule(f"stage{index}")(hx)
            features.append(hx)
        decoded = [features[5]]
        hx = features[5]
        for index in range(5, 0, -1):
            hx = upsample_like(hx, features[index - 1])
            hx = self.get_submodule(f"stage{index}d")(torch.cat((hx, features[index - 1]), 1))
            decoded.insert(0, hx)
        return [self.get_submodule(f"side{index}")(decoded[index - 1]) for index in range(1, 7)]
