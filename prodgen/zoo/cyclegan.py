"""CycleGAN `ResnetGenerator` (`--netG resnet_9blocks --norm instance`), as in
junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`.

Keys match upstream's `latest_net_G_A.pth` (`model.1.weight`, `model.10.conv_block.1.weight`,
…). Two upstream variants are folded in by `prepare_state_dict`: checkpoints trained with
dropout have each block's second convolution at `conv_block.6` instead of `conv_block.5`
(dropout is the identity at inference, so the weights are the same network), and
pre-0.4 checkpoints carry InstanceNorm running statistics that upstream's loader pops.
Pixels go in and come out in -1..1.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from prodgen.checkpoints import StateDict
from prodgen.contract import ImageBounds, image_spec
from prodgen.zoo.graphs import ImageToImage
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel


def _instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            _instance_norm(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            _instance_norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=True),
            _instance_norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=True),
                _instance_norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True
                ),
                _instance_norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_DROPOUT_SECOND_CONV = re.compile(r"(\.conv_block\.)6\.")
_INSTANCE_NORM_BUFFERS = re.compile(r"\.(running_mean|running_var|num_batches_tracked)$")


def fold_upstream_variants(state_dict: StateDict) -> StateDict:
    return {
        _DROPOUT_SECOND_CONV.sub(r"\g<1>5.", k): v
        for k, v in state_dict.items()
        if not _INSTANCE_NORM_BUFFERS.search(k)
    }


def cyclegan_init(network: nn.Module) -> None:
    """Upstream's default `init_type='normal'`, gain 0.02."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def serving_graph(network: nn.Module) -> nn.Module:
    return ImageToImage(network, input_range=(-1.0, 1.0), output_range=(-1.0, 1.0), multiple_of=4)


CYCLEGAN = register(
    ZooModel(
        name="cyclegan",
        task="stylize",
        summary="CycleGAN ResnetGenerator (resnet_9blocks): unpaired photo-to-look translation",
        upstream="junyanz/pytorch-CycleGAN-and-pix2pix (ResnetGenerator, resnet_9blocks, instance norm)",
        build=ResnetGenerator,
        serving_graph=serving_graph,
        inputs=(image_spec("input_image"),),
        outputs=(image_spec("output_image"),),
        bounds=ImageBounds(min_side=64, max_side=2048, opt_side=256),
        prepare_state_dict=fold_upstream_variants,
        init_weights=cyclegan_init,
    )
)
