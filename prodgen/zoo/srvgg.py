"""Real-ESRGAN's `SRVGGNetCompact`, as in xinntao/Real-ESRGAN `realesrgan/archs/srvgg_arch.py`.

A plain stack of 3×3 convolutions with PReLU at the input's resolution, one pixel shuffle
at the end, and the nearest-upsampled input added so the network learns the residual.
Keys match upstream: `body.0.weight` (first conv), `body.1.weight` (its PReLU),
`body.2k.weight`/`body.2k+1.weight` for the k-th body conv and its PReLU, and the last conv
at `body.{2·num_conv+2}`. Files are BasicSR-style, wrapped under `params` (or
`params_ema`). Pixels go in and come out in 0..1, RGB. Its receptive field is small
(num_conv + 2 pixels at input resolution), so tiled upscaling with a modest overlap
reproduces a single pass exactly.

Registered:
- `realesr-general-x4v3`: Real-ESRGAN's general ×4 model (num_feat 64, num_conv 32);
  `realesr-general-wdn-x4v3` (the "denoise" twin) has the same shapes and loads too.
- `realesr-animevideov3`: the XS ×4 model (num_conv 16).
- `srvgg-x2-small`: num_feat 32, num_conv 8, ×2: sized so a demo ×2 upscaler trains in
  minutes on two CPU cores; no upstream file has this shape.
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

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


def _activation(kind: str, num_feat: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if kind == "relu":
        return nn.ReLU()
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1)
    raise ValueError(f"SRVGGNetCompact act_type must be one of {ACTIVATIONS}, not {kind!r}")


class SRVGGNetCompact(nn.Module):
    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


_BODY_PARAMETER = re.compile(r"^body\.(\d+)\.(weight|bias)$")


def _checkpoint_shape(state_dict: StateDict) -> tuple[int, int] | None:
    """(num_conv, upscale) of an SRVGGNetCompact state_dict, None if it does not look like one."""
    matches = [_BODY_PARAMETER.match(key) for key in state_dict]
    if not all(matches):
        return None
    convs = sorted(int(m.group(1)) for m in matches if m and m.group(2) == "bias")
    if not convs or convs[0] != 0:
        return None
    last = state_dict[f"body.{convs[-1]}.bias"]
    upscale = round((last.shape[0] / 3) ** 0.5)
    return len(convs) - 2, upscale


def check_srvgg_checkpoint(state_dict: StateDict, name: str, num_conv: int, upscale: int) -> StateDict:
    """Name a file of another SRVGGNetCompact size (e.g. animevideov3 for general-x4v3) in
    words before the strict load lists keys."""
    found = _checkpoint_shape(state_dict)
    if found is not None and found != (num_conv, upscale):
        raise ProdgenError(
            f"checkpoint is an SRVGGNetCompact with {found[0]} body convs, ×{found[1]}; "
            f"'{name}' has {num_conv} body convs, ×{upscale}"
        )
    return state_dict


def serving_graph(network: nn.Module) -> nn.Module:
    scale = network.upscale
    assert isinstance(scale, int)
    return ImageToImage(network, input_range=(0.0, 1.0), output_range=(0.0, 1.0), scale=scale)


def srvgg_zoo_model(
    name: str, num_feat: int, num_conv: int, upscale: int, summary: str, upstream: str, bounds: ImageBounds
) -> ZooModel:
    return ZooModel(
        name=name,
        task="upscale",
        summary=summary,
        upstream=upstream,
        build=partial(SRVGGNetCompact, num_feat=num_feat, num_conv=num_conv, upscale=upscale),
        serving_graph=serving_graph,
        inputs=(image_spec("input_image"),),
        outputs=(image_spec("output_image"),),
        bounds=bounds,
        prepare_state_dict=partial(check_srvgg_checkpoint, name=name, num_conv=num_conv, upscale=upscale),
        wrapper_keys=("params_ema", "params"),
        facts=ModelFacts(scale=upscale),
    )


REALESR_GENERAL_X4V3 = register(
    srvgg_zoo_model(
        "realesr-general-x4v3",
        num_feat=64,
        num_conv=32,
        upscale=4,
        summary="Real-ESRGAN general ×4 v3 (SRVGGNetCompact, 32 convs): fast photo upscaler",
        upstream="xinntao/Real-ESRGAN SRVGGNetCompact (realesr-general-x4v3, realesr-general-wdn-x4v3)",
        bounds=ImageBounds(min_side=16, max_side=1024, opt_side=256),
    )
)

REALESR_ANIMEVIDEO_V3 = register(
    srvgg_zoo_model(
        "realesr-animevideov3",
        num_feat=64,
        num_conv=16,
        upscale=4,
        summary="Real-ESRGAN anime-video ×4 v3 (SRVGGNetCompact, 16 convs): drawn and flat-colour artwork",
        upstream="xinntao/Real-ESRGAN SRVGGNetCompact (realesr-animevideov3)",
        bounds=ImageBounds(min_side=16, max_side=1024, opt_side=256),
    )
)

SRVGG_X2_SMALL = register(
    srvgg_zoo_model(
        "srvgg-x2-small",
        num_feat=32,
        num_conv=8,
        upscale=2,
        summary="Small SRVGGNetCompact ×2 (32 features, 8 convs): the demo upscaler's architecture",
        upstream="xinntao/Real-ESRGAN SRVGGNetCompact (num_feat 32, num_conv 8, upscale 2)",
        bounds=ImageBounds(min_side=16, max_side=2048, opt_side=256),
    )
)
