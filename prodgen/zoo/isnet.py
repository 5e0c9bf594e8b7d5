"""IS-Net (Qin et al. 2022, "Highly Accurate Dichotomous Image Segmentation"), as in xuebinqin/DIS
`IS-Net/models/isnet.py` (`ISNetDIS`).

U²-Net's encoder-decoder behind a stride-2 `conv_in`, with six side maps upsampled to the input
and no fusion convolution. Module names match upstream (`conv_in.weight`,
`stage1.rebnconvin.conv_s1.weight`, `side1.bias`), so `isnet.pth` and the general-use
`isnet-general-use.pth` (plain state_dicts with the same keys) load unchanged.

The served graph (`prodgen.zoo.cutout_graphs.ISNetCutout`) runs upstream's `Inference.py`:
bilinear resize to 1024² (PyTorch's, no anti-aliasing) truncated to uint8, /255, mean 0.5 and
std 1, the first side map, bilinear back to the photo's size, min-max stretch, ×255 truncated
as `astype(np.uint8)` does. The resize back is PyTorch's bilinear written as per-axis matrices in
PyTorch's own float32 arithmetic (ONNX Runtime's `Resize` places source pixels up to 1e-4 apart,
which the min-max stretch of a flat map magnifies). Measured against upstream's `Inference.py`
run as a script with seeded weights, exported ONNX on skimage's coffee (600×400) and rocket
(300×200): 100 % of matte values within one level, all but a few equal (tests/zoo/test_isnet.py,
`PRODGEN_UPSTREAM_DIS`).
"""

from __future__ import annotations

import torch
from torch import nn

from prodgen.contract import image_spec
from prodgen.zoo.cutout_graphs import ISNetCutout
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel
from prodgen.zoo.u2net import CUTOUT_BOUNDS, MATTE, U2NET_DECODER, U2NET_ENCODER
from prodgen.zoo.u2net_blocks import U2NetBody, upsample_like

ISNET_ENCODER = ((64, 32, 64), *U2NET_ENCODER[1:])


class ISNetDIS(U2NetBody):
    def __init__(self) -> None:
        super().__init__(ISNET_ENCODER, U2NET_DECODER)
        self.conv_in = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.pool_in = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        """Upstream defines it but its forward skips it; kept so the module tree matches."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sides = self.side_logits(self.conv_in(x))
        return tuple(torch.sigmoid(upsample_like(side, x)) for side in sides)


ISNET_DIS = register(
    ZooModel(
        name="isnet-dis",
        task="cutout",
        summary="IS-Net (DIS, 44 M parameters): fine-edged product matte, at 1024² inside",
        upstream="xuebinqin/DIS ISNetDIS (isnet.pth, isnet-general-use.pth)",
        build=ISNetDIS,
        serving_graph=ISNetCutout,
        inputs=(image_spec("image"),),
        outputs=(MATTE,),
        bounds=CUTOUT_BOUNDS,
    )
)
