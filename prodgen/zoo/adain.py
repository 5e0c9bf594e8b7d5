"""AdaIN arbitrary style transfer (naoto0804/pytorch-AdaIN: `net.py`, `function.py`, `test.py`).

Upstream ships two weight files, loaded here as the two named parts of one network:
`vgg_normalised.pth` (the whole normalised VGG-19 `vgg` Sequential, of which the first
31 layers, up to relu4_1, are used) and `decoder.pth` (the `decoder` Sequential). Layer
indices are upstream's, so both files load strictly; the VGG layers past relu4_1 that
the file also holds are dropped.

Served: a content photo, a style photo (any sizes within the bounds, independently) and
the style strength α; images are taken as 0..1 (upstream's `ToTensor`, no mean/std).
The encoder pools three times with `ceil_mode`, so the decoder's output is the content
size rounded up to a multiple of 8; it is cropped back to the content size.
"""

from __future__ import annotations

import torch
from torch import nn

from prodgen.checkpoints import StateDict
from prodgen.contract import ImageBounds, TensorSpec, image_spec
from prodgen.model_facts import ModelFacts
from prodgen.zoo.graphs import float_to_uint8_nhwc, uint8_nhwc_to_float
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel

ENCODER_LAYERS = 31
"""`vgg[:31]`: the normalised VGG up to relu4_1, as upstream's `test.py` cuts it."""
EPS = 1e-5


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3)), nn.ReLU()]


def _pool() -> nn.Module:
    return nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)


def encoder() -> nn.Sequential:
    """Upstream's `vgg` Sequential up to relu4_1 (indices 0..30)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    layers += _conv(3, 64) + _conv(64, 64) + [_pool()]
    layers += _conv(64, 128) + _conv(128, 128) + [_pool()]
    layers += _conv(128, 256) + _conv(256, 256) + _conv(256, 256) + _conv(256, 256) + [_pool()]
    layers += _conv(256, 512)
    return nn.Sequential(*layers)


def decoder() -> nn.Sequential:
    """Upstream's `decoder` Sequential: relu4_1 features back to RGB, nearest ×2 three times."""
    layers: list[nn.Module] = _conv(512, 256) + [nn.Upsample(scale_factor=2, mode="nearest")]
    layers += (
        _conv(256, 256)
        + _conv(256, 256)
        + _conv(256, 256)
        + _conv(256, 128)
        + [nn.Upsample(scale_factor=2, mode="nearest")]
    )
    layers += _conv(128, 128) + _conv(128, 64) + [nn.Upsample(scale_factor=2, mode="nearest")]
    layers += _conv(64, 64) + [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 3, (3, 3))]
    return nn.Sequential(*layers)


def calc_mean_std(feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std (unbiased variance + eps), as upstream's `calc_mean_std`."""
    flat = feat.flatten(2)
    mean = flat.mean(dim=2, keepdim=True)
    var = (flat - mean).square().sum(dim=2, keepdim=True) / (flat.shape[2] - 1)
    return mean.unsqueeze(3), (var + EPS).sqrt().unsqueeze(3)


def adaptive_instance_normalization(content_feat: torch.Tensor, style_feat: torch.Tensor) -> torch.Tensor:
    style_mean, style_std = calc_mean_std(style_feat)
    content_mean, content_std = calc_mean_std(content_feat)
    return (content_feat - content_mean) / content_std * style_std + style_mean


class AdaIN(nn.Module):
    """forward(content, style, α) with images in 0..1 → the restyled content, as upstream's `style_transfer`."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = encoder()
        self.decoder = decoder()

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        content_f = self.vgg(content)
        feat = adaptive_instance_normalization(content_f, self.vgg(style))
        alpha = alpha.reshape(-1, 1, 1, 1)
        return self.decoder(feat * alpha + content_f * (1 - alpha))


class AdaINServing(nn.Module):
    """input_image, style_image uint8 (N, H, W, 3), alpha FP32 (N, 1) → output_image uint8, content size."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor, style_image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        content = uint8_nhwc_to_float(image, (0.0, 1.0))
        style = uint8_nhwc_to_float(style_image, (0.0, 1.0))
        y = self.network(content, style, alpha)
        return float_to_uint8_nhwc(y[:, :, : content.shape[2], : content.shape[3]], (0.0, 1.0))


def drop_layers_past_relu4_1(state_dict: StateDict) -> StateDict:
    """`vgg_normalised.pth` holds all 53 VGG layers; keep the 31 the encoder has."""

    def used(key: str) -> bool:
        if not key.startswith("vgg."):
            return True
        index = key.split(".")[1]
        return not index.isdigit() or int(index) < ENCODER_LAYERS

    return {key: value for key, value in state_dict.items() if used(key)}


ADAIN = register(
    ZooModel(
        name="adain",
        task="stylize",
        summary="AdaIN arbitrary style transfer: any style photo onto a product photo, strength α",
        upstream="naoto0804/pytorch-AdaIN (vgg_normalised.pth up to relu4_1, decoder.pth)",
        build=AdaIN,
        serving_graph=AdaINServing,
        inputs=(
            image_spec("input_image"),
            image_spec("style_image"),
            TensorSpec("alpha", "FP32", (1,), value_range=(0.0, 1.0)),
        ),
        outputs=(image_spec("output_image"),),
        bounds=ImageBounds(min_side=32, max_side=1024, opt_side=256),
        prepare_state_dict=drop_layers_past_relu4_1,
        weight_files=("vgg", "decoder"),
        facts=ModelFacts(input_defaults={"alpha": 1.0}),
    )
)
