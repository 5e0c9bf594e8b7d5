"""Fast neural style TransformerNet (Johnson et al.), as in pytorch/examples
`fast_neural_style/neural_style/transformer_net.py`.

Module names match upstream (`conv1.conv2d.weight`, `res3.in2.bias`, `deconv1.conv2d.weight`),
so its saved `.pth`/`.model` files load unchanged. Checkpoints saved by old PyTorch carry
InstanceNorm `running_mean`/`running_var` keys; upstream's `stylize` deletes them, and so
does `prepare_state_dict` here. Pixels go in and come out in 0..255.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from prodgen.checkpoints import StateDict
from prodgen.contract import ImageBounds, image_spec
from prodgen.zoo.graphs import ImageToImage
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel


class ConvLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsampling then convolution: no checkerboard artefacts."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, upsample: int) -> None:
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvLayer(3, 32, kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        self.deconv1 = UpsampleConvLayer(128, 64, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


_LEGACY_INSTANCE_NORM_STATS = re.compile(r"in\d+\.running_(mean|var)$")


def drop_legacy_instance_norm_stats(state_dict: StateDict) -> StateDict:
    """Upstream's own fix in `neural_style.stylize`: these buffers are unused by InstanceNorm."""
    return {k: v for k, v in state_dict.items() if not _LEGACY_INSTANCE_NORM_STATS.search(k)}


def serving_graph(network: nn.Module) -> nn.Module:
    return ImageToImage(network, input_range=(0.0, 255.0), output_range=(0.0, 255.0), multiple_of=4)


FAST_NEURAL_STYLE = register(
    ZooModel(
        name="fast-neural-style",
        task="stylize",
        summary="Fast neural style TransformerNet: restyles a product photo, any size",
        upstream="pytorch/examples fast_neural_style (TransformerNet)",
        build=TransformerNet,
        serving_graph=serving_graph,
        inputs=(image_spec("input_image"),),
        outputs=(image_spec("output_image"),),
        bounds=ImageBounds(min_side=32, max_side=2048, opt_side=256),
        prepare_state_dict=drop_legacy_instance_norm_stats,
    )
)
