"""U²-Net and U²-NetP (Qin et al. 2020), as in xuebinqin/U-2-Net `model/u2net.py` (`U2NET`, `U2NETP`).

Salient-object segmentation: the product's matte from a photo. Module names match upstream
(`stage1.rebnconvin.conv_s1.weight`, `stage5d.rebnconv3d.bn_s1.running_var`, `side1.weight`,
`outconv.weight`), so `u2net.pth` and `u2netp.pth` (plain state_dicts) load unchanged.
The network returns upstream's seven maps after the sigmoid, the fused one first.

The served graph (`prodgen.zoo.cutout_graphs.U2NetCutout`) runs upstream's `u2net_test.py`:
scikit-image's anti-aliased resize to 320×320, ÷ the resized photo's maximum, ImageNet
normalisation, the fused map, `normPRED`, ×255 as an 8-bit picture, PIL bilinear back to the
photo's size. scikit-image's resize is rebuilt exactly (its Gaussian anti-aliasing, zero
padding, linear interpolation and clip, as per-axis resampling matrices), not approximated by
an ONNX `Resize`; what remains is float32 against scikit-image's float64 and the rounding of
PIL's fixed-point weights. Measured against upstream's own script (its modules, `RescaleT`,
`ToTensorLab`, `normPRED`, `save_output`) with seeded weights, exported ONNX on skimage's coffee
(600×400), chelsea (451×300) and rocket (300×200): 100 % of matte values within one level for
both networks, 99.5-99.97 % equal (tests/zoo/test_u2net.py, `PRODGEN_UPSTREAM_U2NET`).

Registered: `u2net` (44 M parameters), `u2netp` (1.1 M), and `u2netp-demo`: U²-NetP reading
the photo at 64×64, for the demo network the project trains in minutes on two cores
(demo/train_cutout.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from prodgen.contract import ImageBounds, TensorSpec, image_spec
from prodgen.zoo.cutout_graphs import U2NetCutout
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel
from prodgen.zoo.u2net_blocks import U2NetBody, Widths, upsample_like

U2NET_ENCODER: tuple[Widths, ...] = (
    (3, 32, 64),
    (64, 32, 128),
    (128, 64, 256),
    (256, 128, 512),
    (512, 256, 512),
    (512, 256, 512),
)
U2NET_DECODER: tuple[Widths, ...] = ((1024, 256, 512), (1024, 128, 256), (512, 64, 128), (256, 32, 64), (128, 16, 64))
U2NETP_ENCODER: tuple[Widths, ...] = ((3, 16, 64),) + ((64, 16, 64),) * 5
U2NETP_DECODER: tuple[Widths, ...] = ((128, 16, 64),) * 5

MATTE = TensorSpec("matte", "UINT8", (-1, -1, 1))
"""Every cutout model's output: 0 background … 255 product, the input photo's height and width."""

CUTOUT_BOUNDS = ImageBounds(min_side=16, max_side=4096, opt_side=320)


class U2Net(U2NetBody):
    """`U2NET` / `U2NETP`: the six side maps upsampled to the first and fused by a 1×1 `outconv`."""

    def __init__(
        self, encoder: tuple[Widths, ...] = U2NET_ENCODER, decoder: tuple[Widths, ...] = U2NET_DECODER
    ) -> None:
        super().__init__(encoder, decoder)
        self.outconv = nn.Conv2d(6, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sides = self.side_logits(x)
        sides = [sides[0]] + [upsample_like(side, sides[0]) for side in sides[1:]]
        fused = self.outconv(torch.cat(sides, 1))
        return tuple(torch.sigmoid(logits) for logits in (fused, *sides))


def u2netp() -> U2Net:
    return U2Net(U2NETP_ENCODER, U2NETP_DECODER)


def cutout_zoo_model(name: str, build: Callable[[], nn.Module], side: int, summary: str, upstream: str) -> ZooModel:
    return ZooModel(
        name=name,
        task="cutout",
        summary=summary,
        upstream=upstream,
        build=build,
        serving_graph=partial(U2NetCutout, side=side),
        inputs=(image_spec("image"),),
        outputs=(MATTE,),
        bounds=CUTOUT_BOUNDS,
    )


U2NET = register(
    cutout_zoo_model(
        "u2net",
        U2Net,
        side=320,
        summary="U²-Net (44 M parameters): the product's matte from a photo, at 320² inside",
        upstream="xuebinqin/U-2-Net U2NET (u2net.pth)",
    )
)

U2NETP = register(
    cutout_zoo_model(
        "u2netp",
        u2netp,
        side=320,
        summary="U²-NetP (1.1 M parameters): U²-Net's small twin, at 320² inside",
        upstream="xuebinqin/U-2-Net U2NETP (u2netp.pth)",
    )
)

U2NETP_DEMO = register(
    cutout_zoo_model(
        "u2netp-demo",
        u2netp,
        side=64,
        summary="U²-NetP reading the photo at 64²: the demo cutout network's architecture",
        upstream="xuebinqin/U-2-Net U2NETP (u2netp.pth loads; the demo trains it at 64², demo/train_cutout.py)",
    )
)
