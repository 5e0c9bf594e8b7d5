"""pix2pix `UnetGenerator` (`--netG unet_256` / `unet_128`, `--norm batch`), as in
junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`.

Keys match upstream's `latest_net_G.pth`: the U-Net nests one `UnetSkipConnectionBlock`
per level, each holding a `model` Sequential, so keys read `model.model.0.weight`
(outermost down-conv), `model.model.1.model.1.weight` (next level's down-conv),
`model.model.1.model.2.running_mean` (its batch norm), …, `model.model.3.bias` (outermost
up-conv). Dropout (upstream's default for pix2pix) sits at the end of the middle blocks and
has no weights, so files trained with or without it load the same. Checkpoints from
PyTorch < 0.4 lack `num_batches_tracked`; it is filled in, as PyTorch's own loader does.
Pixels go in and come out in -1..1. Sides must be multiples of 2^num_downs (256 or 128):
other sizes are reflect-padded inside the graph and cropped back.

Which batch-norm mode the export reproduces
-------------------------------------------
Upstream's `test.py` calls `model.eval()` only with `--eval`, and by default does not:
batch norm then normalises with the statistics of the test batch, which `test.py` fixes
at one image, and dropout stays active. That is the pix2pix paper's choice too
(batch statistics at batch size 1 act as instance normalisation). The export reproduces
that default, deterministically and independent of how Triton batches requests:

- batch norm uses **per-image statistics** (mean and biased variance over each image's
  H×W, then upstream's learned scale and shift) — exactly train-mode `BatchNorm2d` on a
  batch of one image, but applied to every image of a batch separately; the running
  statistics in the file are loaded and ignored;
- dropout is **off**: upstream's default output is random (p = 0.5 at every call); the
  export serves the deterministic network.

Two consequences worth knowing. At 256² (unet_256) the bottleneck is 1×1 and upstream puts
no norm there (a one-pixel, one-image batch norm would output its bias alone); the
smallest normalised maps are 2×2, so their per-image statistics rest on four values.
And because the statistics depend on the whole image, in-graph padding to a multiple of
256 changes them slightly: send sides that are multiples of 256 to match upstream exactly.

Users who test with `--eval` want running statistics instead: build with
`statistics="running"` (see `pix2pix_zoo_model`). The mode is published in config.pbtxt as
`prodgen.notes.batch_norm_statistics`.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Literal

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

Statistics = Literal["per-image", "running"]


class PerImageBatchNorm2d(nn.BatchNorm2d):
    """`BatchNorm2d` with upstream's parameter and buffer names that always normalises with
    each image's own statistics: train-mode batch norm on a batch of one, per image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, use_input_stats=True, eps=self.eps)


def _norm(channels: int, statistics: Statistics) -> nn.BatchNorm2d:
    return PerImageBatchNorm2d(channels) if statistics == "per-image" else nn.BatchNorm2d(channels)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down-sample, the inner levels, up-sample; the input is concatenated
    to the output (except at the outermost level). Layer order, and so key indices, as upstream."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        statistics: Statistics,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        downconv = nn.Conv2d(input_nc or outer_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
        downrelu = nn.LeakyReLU(0.2)
        uprelu = nn.ReLU()
        layers: list[nn.Module]
        if outermost:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, uprelu, upconv, _norm(outer_nc, statistics)]
        else:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [
                downrelu,
                downconv,
                _norm(inner_nc, statistics),
                submodule,
                uprelu,
                upconv,
                _norm(outer_nc, statistics),
            ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """`num_downs` levels: 8 for unet_256, 7 for unet_128 (a 2^num_downs side reaches 1×1)."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        statistics: Statistics = "per-image",
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError("UnetGenerator needs num_downs >= 5")
        self.num_downs = num_downs
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, statistics, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, statistics, submodule=block)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, statistics, submodule=block)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, statistics, submodule=block)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, statistics, submodule=block)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, statistics, input_nc=input_nc, submodule=block, outermost=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_RUNNING_MEAN = re.compile(r"^(.*)\.running_mean$")


def add_missing_batch_counters(state_dict: StateDict) -> StateDict:
    """Pre-0.4 PyTorch saved batch norms without `num_batches_tracked`; PyTorch's loader
    fills it in with 0 for such files, and so does this (it has no effect at inference)."""
    fixed = dict(state_dict)
    for key in state_dict:
        match = _RUNNING_MEAN.match(key)
        if match and f"{match.group(1)}.num_batches_tracked" not in fixed:
            fixed[f"{match.group(1)}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return fixed


def prepare_unet_checkpoint(state_dict: StateDict, name: str, num_downs: int) -> StateDict:
    """Name a U-Net of the other depth (unet_128 for unet_256) in words, then fill in
    missing batch counters."""
    if state_dict and all(key.startswith("model.model.") for key in state_dict):
        found = max(key.count("model.") for key in state_dict) - 1
        if found != num_downs:
            raise ProdgenError(
                f"checkpoint is a pix2pix U-Net with {found} levels (unet_{2**found}); "
                f"'{name}' has {num_downs} (unet_{2**num_downs})"
            )
    return add_missing_batch_counters(state_dict)


def pix2pix_init(network: nn.Module) -> None:
    """Upstream's default `init_type='normal'`, gain 0.02: N(0, 0.02) convolutions,
    N(1, 0.02) batch-norm scales, zero biases."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)


def serving_graph(network: nn.Module) -> nn.Module:
    num_downs = network.num_downs
    assert isinstance(num_downs, int)
    return ImageToImage(network, input_range=(-1.0, 1.0), output_range=(-1.0, 1.0), multiple_of=2**num_downs)


def pix2pix_zoo_model(name: str, num_downs: int, statistics: Statistics = "per-image") -> ZooModel:
    side = 2**num_downs
    return ZooModel(
        name=name,
        task="stylize",
        summary=f"pix2pix U-Net (unet_{side}, batch norm, {statistics} statistics): paired image-to-image translation",
        upstream=f"junyanz/pytorch-CycleGAN-and-pix2pix (UnetGenerator, unet_{side}, batch norm)",
        build=partial(UnetGenerator, num_downs=num_downs, statistics=statistics),
        serving_graph=serving_graph,
        inputs=(image_spec("input_image"),),
        outputs=(image_spec("output_image"),),
        bounds=ImageBounds(min_side=side, max_side=2048, opt_side=side),
        prepare_state_dict=partial(prepare_unet_checkpoint, name=name, num_downs=num_downs),
        init_weights=pix2pix_init,
        facts=ModelFacts(side_multiple=side, notes={"batch_norm_statistics": statistics, "dropout": "off"}),
    )


PIX2PIX_UNET_256 = register(pix2pix_zoo_model("pix2pix-unet256", num_downs=8))
PIX2PIX_UNET_128 = register(pix2pix_zoo_model("pix2pix-unet128", num_downs=7))
