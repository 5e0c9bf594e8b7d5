"""ESRGAN / Real-ESRGAN `RRDBNet`, as in XPixelGroup/BasicSR `basicsr/archs/rrdbnet_arch.py`.

Module names match upstream (`conv_first`, `body.N.rdbK.convJ`, `conv_body`, `conv_up1`,
`conv_up2`, `conv_hr`, `conv_last`), so BasicSR and Real-ESRGAN files load unchanged.
Those files wrap the state_dict under `params_ema` (the EMA weights upstream infers with)
and/or `params`; `params_ema` is preferred, as in Real-ESRGAN's `RealESRGANer`.

The trunk always upsamples ×4 (two nearest ×2 steps). For scale 2 and 1 upstream first
pixel-unshuffles the input by 2 or 4, so sides must be multiples of 2 or 4; the serving
graph reflect-pads to that multiple and crops the result, as `RealESRGANer` does
(its "mod pad"). Pixels go in and come out in 0..1, RGB.

Registered:
- `realesrgan-x4`: RealESRGAN_x4plus / RealESRNet_x4plus (and BasicSR's ESRGAN ×4):
  num_block 23, num_feat 64, num_grow_ch 32, scale 4.
- `realesrgan-x2`: RealESRGAN_x2plus: the same trunk at scale 2.
"""

from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from prodgen.checkpoints import StateDict
from prodgen.contract import ImageBounds, image_spec
from prodgen.errors import ProdgenError
from prodgen.model_facts import ModelFacts
from prodgen.zoo.graphs import ImageToImage
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel

UNSHUFFLE = {4: 1, 2: 2, 1: 4}
"""Pixel-unshuffle factor applied to the input for each output scale."""

WRAPPER_KEYS = ("params_ema", "params")


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convolutions; the residual is scaled by 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(self.lrelu(conv(torch.cat(features, 1))))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, residual scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in UNSHUFFLE:
            raise ValueError(f"RRDBNet scale must be one of {sorted(UNSHUFFLE)}, not {scale}")
        self.scale = scale
        self.unshuffle = UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def rrdb_init(network: nn.Module) -> None:
    """Upstream's `default_init_weights(..., 0.1)` for the dense blocks' convolutions
    (Kaiming normal scaled by 0.1, zero bias); the other layers keep PyTorch's defaults."""
    for module in network.modules():
        if isinstance(module, ResidualDenseBlock):
            for conv in (module.conv1, module.conv2, module.conv3, module.conv4, module.conv5):
                with torch.no_grad():
                    nn.init.kaiming_normal_(conv.weight).mul_(0.1)
                    if conv.bias is not None:
                        conv.bias.zero_()


_RRDB_KEY = re.compile(r"^body\.(\d+)\.rdb[123]\.conv[1-5]\.(weight|bias)$")


def _checkpoint_block_count(state_dict: StateDict) -> int:
    blocks = {int(m.group(1)) for m in map(_RRDB_KEY.match, state_dict) if m}
    return max(blocks) + 1 if blocks else 0


def check_rrdb_checkpoint(state_dict: StateDict, name: str, scale: int, num_block: int) -> StateDict:
    """Name the usual mismatches (a ×4 file for a ×2 model, a 6-block anime model) in words
    before the strict load lists keys."""
    first = state_dict.get("conv_first.weight")
    if first is not None and first.ndim == 4:
        found_scale = {3 * factor**2: s for s, factor in UNSHUFFLE.items()}.get(int(first.shape[1]))
        if found_scale is not None and found_scale != scale:
            raise ProdgenError(
                f"checkpoint is an RRDBNet ×{found_scale} (conv_first takes {first.shape[1]} channels); "
                f"'{name}' is ×{scale}: export it with the zoo model of its scale"
            )
    blocks = _checkpoint_block_count(state_dict)
    if first is not None and blocks and blocks != num_block:
        raise ProdgenError(
            f"checkpoint is an RRDBNet with {blocks} RRDB blocks; '{name}' has {num_block} "
            f"(e.g. RealESRGAN_x4plus_anime_6B has 6)"
        )
    return state_dict


def serving_graph(network: nn.Module) -> nn.Module:
    assert isinstance(network, RRDBNet)
    return ImageToImage(
        network, input_range=(0.0, 1.0), output_range=(0.0, 1.0), multiple_of=network.unshuffle, scale=network.scale
    )


def rrdbnet_zoo_model(name: str, scale: int, summary: str, upstream: str, bounds: ImageBounds) -> ZooModel:
    """A Real-ESRGAN-sized RRDBNet (23 blocks, 64 features, growth 32) at `scale`."""
    return ZooModel(
        name=name,
        task="upscale",
        summary=summary,
        upstream=upstream,
        build=partial(RRDBNet, scale=scale),
        serving_graph=serving_graph,
        inputs=(image_spec("input_image"),),
        outputs=(image_spec("output_image"),),
        bounds=bounds,
        prepare_state_dict=partial(check_rrdb_checkpoint, name=name, scale=scale, num_block=23),
        wrapper_keys=WRAPPER_KEYS,
        init_weights=rrdb_init,
        facts=ModelFacts(scale=scale, side_multiple=UNSHUFFLE[scale]),
    )


REALESRGAN_X4 = register(
    rrdbnet_zoo_model(
        "realesrgan-x4",
        scale=4,
        summary="Real-ESRGAN ×4 RRDBNet (23 blocks): photo upscaler, output 4× the input's sides",
        upstream="XPixelGroup/BasicSR RRDBNet (RealESRGAN_x4plus, RealESRNet_x4plus, ESRGAN ×4)",
        bounds=ImageBounds(min_side=16, max_side=512, opt_side=128),
    )
)

REALESRGAN_X2 = register(
    rrdbnet_zoo_model(
        "realesrgan-x2",
        scale=2,
        summary="Real-ESRGAN ×2 RRDBNet (23 blocks, pixel-unshuffled input): output 2× the input's sides",
        upstream="XPixelGroup/BasicSR RRDBNet scale 2 (RealESRGAN_x2plus)",
        bounds=ImageBounds(min_side=16, max_side=1024, opt_side=128),
    )
)
