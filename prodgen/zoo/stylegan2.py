"""StyleGAN2 generator (rosinality/stylegan2-pytorch `model.py`, `Generator`).

Module, parameter and buffer names follow upstream, so a `g_ema` state_dict (from a
training checkpoint or from upstream's `convert_weight.py`) loads strictly. Three choices
make it exportable and deterministic:

- the modulated convolutions use upstream's non-fused path (modulate the input, convolve
  with the shared weight, demodulate the output), which has static conv weights and so a
  dynamic batch in ONNX; upstream's default fused path is the same sum, grouped per sample;
- noise comes from the stored `noises.noise_N` buffers (upstream `randomize_noise=False`);
- one latent `z` drives every layer (no style mixing), and truncation ψ is an input:
  w' = w_avg + ψ·(w − w_avg), ψ = 1 leaving w as it is.

w_avg is the checkpoint's `latent_avg` (written by upstream's `convert_weight.py`) when
present; otherwise it is upstream's `mean_latent`: the mean w of 4096 z drawn with seed 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from prodgen.contract import TensorSpec, image_spec
from prodgen.model_facts import ModelFacts
from prodgen.zoo.graphs import MappedLatentToImage
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel
from prodgen.zoo.stylegan2_ops import FusedLeakyReLU, fused_leaky_relu, upfirdn2d

STYLE_DIM = 512
N_MLP = 8
LR_MLP = 0.01
BLUR_KERNEL = (1, 3, 3, 1)
MEAN_LATENT_SAMPLES = 4096
MEAN_LATENT_SEED = 0


def make_kernel(taps: tuple[int, ...]) -> torch.Tensor:
    """Separable FIR kernel: the outer product of `taps`, normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def channels_at(resolution: int, channel_multiplier: int) -> int:
    return {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }[resolution]


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """×2 upsampling by zero insertion and the blur kernel (scaled by factor²)."""

    kernel: torch.Tensor

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(BLUR_KERNEL) * factor**2)
        p = len(BLUR_KERNEL) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    kernel: torch.Tensor

    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(BLUR_KERNEL) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weights scaled at run time by lr_mul/√in."""

    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init))
        self.activate = activate
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    def __init__(
        self, in_channel: int, out_channel: int, kernel_size: int, demodulate: bool = True, upsample: bool = False
    ) -> None:
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(BLUR_KERNEL) - factor) - (kernel_size - 1)
            self.blur = Blur(pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(STYLE_DIM, in_channel, bias_init=1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        weight = self.scale * self.weight.squeeze(0)
        style = self.modulation(w)
        x = x * style.reshape(-1, self.in_channel, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # Σ_{i,k} (w_oik·s_i)² = Σ_i s_i²·Σ_k w_oik²: upstream's sum without a per-sample weight copy
            demod = torch.rsqrt(F.linear(style.square(), weight.square().sum((2, 3))) + 1e-8)
            out = out * demod.reshape(-1, self.out_channel, 1, 1)
        return out


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch_like: torch.Tensor) -> torch.Tensor:
        return self.input.expand(batch_like.shape[0], -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channel, 3, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """Upstream's `Generator(size, 512, 8, channel_multiplier)`; forward(z, ψ) → RGB in −1..1.

    `truncation_latent` (w_avg) is a non-persistent buffer, so the state_dict keys stay
    exactly upstream's; `set_truncation_latent` fills it after the weights are loaded.
    """

    truncation_latent: torch.Tensor

    def __init__(self, size: int, channel_multiplier: int = 2) -> None:
        super().__init__()
        self.size = size
        self.style = nn.Sequential(
            PixelNorm(), *(EqualLinear(STYLE_DIM, STYLE_DIM, lr_mul=LR_MLP, activate=True) for _ in range(N_MLP))
        )
        self.input = ConstantInput(channels_at(4, channel_multiplier))
        self.conv1 = StyledConv(channels_at(4, channel_multiplier), channels_at(4, channel_multiplier))
        self.to_rgb1 = ToRGB(channels_at(4, channel_multiplier), upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer in range(self.num_layers):
            side = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise_{layer}", torch.randn(1, 1, side, side))
        in_channel = channels_at(4, channel_multiplier)
        for level in range(3, self.log_size + 1):
            out_channel = channels_at(2**level, channel_multiplier)
            self.convs.append(StyledConv(in_channel, out_channel, upsample=True))
            self.convs.append(StyledConv(out_channel, out_channel))
            self.to_rgbs.append(ToRGB(out_channel))
            in_channel = out_channel
        self.register_buffer("truncation_latent", torch.zeros(1, STYLE_DIM), persistent=False)
        self.truncation_latent_source = "unset"

    def mean_latent(self, samples: int = MEAN_LATENT_SAMPLES, seed: int = MEAN_LATENT_SEED) -> torch.Tensor:
        """Upstream's `mean_latent`: the mean w of `samples` normal z, here drawn with a fixed seed."""
        z = torch.randn(samples, STYLE_DIM, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return self.style(z).mean(0, keepdim=True)

    def set_truncation_latent(self, latent_avg: torch.Tensor | None) -> None:
        if latent_avg is not None:
            self.truncation_latent.copy_(latent_avg.reshape(1, STYLE_DIM).to(torch.float32))
            self.truncation_latent_source = "the checkpoint's latent_avg"
        else:
            self.truncation_latent.copy_(self.mean_latent())
            self.truncation_latent_source = (
                f"mean w of {MEAN_LATENT_SAMPLES} z drawn with seed {MEAN_LATENT_SEED} (upstream mean_latent)"
            )

    def noise(self, layer: int) -> torch.Tensor:
        return getattr(self.noises, f"noise_{layer}")

    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        w = self.style(z)
        w = self.truncation_latent + truncation.reshape(-1, 1) * (w - self.truncation_latent)
        out = self.conv1(self.input(w), w, self.noise(0))
        skip = self.to_rgb1(out, w)
        for index, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * index](out, w, self.noise(2 * index + 1))
            out = self.convs[2 * index + 1](out, w, self.noise(2 * index + 2))
            skip = to_rgb(out, w, skip)
        return skip


def finish_loading(network: nn.Module, checkpoint: Mapping[str, object] | None) -> str:
    """Set w_avg from the checkpoint's `latent_avg`, or compute upstream's mean latent."""
    assert isinstance(network, Generator)
    latent_avg = checkpoint.get("latent_avg") if checkpoint is not None else None
    network.set_truncation_latent(latent_avg if isinstance(latent_avg, torch.Tensor) else None)
    return f"truncation centre w_avg: {network.truncation_latent_source}"


def stylegan2_zoo_model(name: str, size: int, channel_multiplier: int, summary: str) -> ZooModel:
    return ZooModel(
        name=name,
        task="generate",
        summary=summary,
        upstream=f"rosinality/stylegan2-pytorch Generator(size={size}, style_dim=512, n_mlp=8, "
        f"channel_multiplier={channel_multiplier}), g_ema",
        build=lambda: Generator(size, channel_multiplier),
        serving_graph=MappedLatentToImage,
        inputs=(TensorSpec("z", "FP32", (STYLE_DIM,)), TensorSpec("truncation", "FP32", (1,))),
        outputs=(image_spec("output_image", size),),
        wrapper_keys=("g_ema",),
        finish_loading=finish_loading,
        facts=ModelFacts(
            input_defaults={"truncation": 1.0},
            notes={
                "truncation_latent": "checkpoint latent_avg if present, else the mean w of 4096 z seeded 0",
                "noise": "stored noises buffers (deterministic)",
            },
        ),
    )


STYLEGAN2_256 = register(
    stylegan2_zoo_model(
        "stylegan2-256", 256, 2, "StyleGAN2 config-f generator, 256×256 (rosinality layout), with truncation ψ"
    )
)

STYLEGAN2_64 = register(
    stylegan2_zoo_model(
        "stylegan2-64", 64, 1, "Small StyleGAN2 generator, 64×64, channel multiplier 1, with truncation ψ"
    )
)
