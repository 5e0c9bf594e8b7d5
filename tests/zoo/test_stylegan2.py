"""StyleGAN2 (rosinality/stylegan2-pytorch `Generator`): ops, upstream files, truncation, ONNX, serving.

Key names and shapes are written out from upstream's `model.py`: an 8-layer `style` MLP
after PixelNorm (index 0, no weights), `input.input`, `conv1`/`to_rgb1` at 4×4, then per
resolution 8..size an upsampling `StyledConv` (with `conv.blur.kernel`), a plain one and a
`ToRGB` (with `upsample.kernel`), and one `noises.noise_N` buffer per styled conv.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from prodgen import zoo
from prodgen.client import ProdgenClient
from prodgen.contract import image_spec
from prodgen.export.onnx_export import export_onnx
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.export.verify import run_pytorch, verify_onnx
from prodgen.model_repository.config import BatchingOptions
from prodgen.seeding import latents_from_seed
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.samples import verification_cases
from prodgen.zoo.stylegan2 import Generator, ModulatedConv2d
from prodgen.zoo.stylegan2_ops import fused_leaky_relu, upfirdn2d
from tests_support import free_port

# (key, shape) pairs read off upstream for Generator(256, 512, 8, channel_multiplier=2).
UPSTREAM_256_SAMPLES = {
    "style.1.weight": (512, 512),
    "style.8.bias": (512,),
    "input.input": (1, 512, 4, 4),
    "conv1.conv.weight": (1, 512, 512, 3, 3),
    "conv1.conv.modulation.bias": (512,),
    "conv1.noise.weight": (1,),
    "conv1.activate.bias": (512,),
    "to_rgb1.conv.weight": (1, 3, 512, 1, 1),
    "to_rgb1.bias": (1, 3, 1, 1),
    "convs.0.conv.blur.kernel": (4, 4),
    "convs.10.conv.weight": (1, 128, 256, 3, 3),
    "convs.11.conv.modulation.weight": (128, 512),
    "to_rgbs.5.upsample.kernel": (4, 4),
    "to_rgbs.5.conv.weight": (1, 3, 128, 1, 1),
    "noises.noise_0": (1, 1, 4, 4),
    "noises.noise_12": (1, 1, 256, 256),
}
UPSTREAM_KEY_COUNT = {"stylegan2-256": 135, "stylegan2-64": 99}


def upstream_shapes(size: int, channel_multiplier: int) -> dict[str, tuple[int, ...]]:
    channels = {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
    }
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(1, 9):
        shapes[f"style.{layer}.weight"] = (512, 512)
        shapes[f"style.{layer}.bias"] = (512,)
    shapes["input.input"] = (1, 512, 4, 4)

    def styled(prefix: str, cin: int, cout: int, upsample: bool) -> None:
        shapes[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, 512)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        if upsample:
            shapes[f"{prefix}.conv.blur.kernel"] = (4, 4)
        shapes[f"{prefix}.noise.weight"] = (1,)
        shapes[f"{prefix}.activate.bias"] = (cout,)

    def to_rgb(prefix: str, cin: int, upsample: bool) -> None:
        if upsample:
            shapes[f"{prefix}.upsample.kernel"] = (4, 4)
        shapes[f"{prefix}.conv.weight"] = (1, 3, cin, 1, 1)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, 512)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        shapes[f"{prefix}.bias"] = (1, 3, 1, 1)

    styled("conv1", 512, 512, False)
    to_rgb("to_rgb1", 512, False)
    cin = 512
    for index, level in enumerate(range(3, int(math.log2(size)) + 1)):
        cout = channels[2**level]
        styled(f"convs.{2 * index}", cin, cout, True)
        styled(f"convs.{2 * index + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{index}", cout, True)
        cin = cout
    for layer in range((int(math.log2(size)) - 2) * 2 + 1):
        side = 2 ** ((layer + 5) // 2)
        shapes[f"noises.noise_{layer}"] = (1, 1, side, side)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Weights that look trained enough to give varied pictures (noise strengths non-zero)."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    for key in state:
        if key.endswith("kernel"):
            taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
            state[key] = torch.outer(taps, taps) / 64 * 4
        elif key.endswith("bias") or key.endswith("noise.weight"):
            state[key] = state[key] * 0.1
        if key.endswith("modulation.bias"):
            state[key] = state[key] + 1.0
        if key.startswith("style."):
            state[key] = state[key] * 100  # upstream stores mapping weights divided by lr_mul 0.01
    return state


def tiny() -> zoo.ZooModel:
    """A Generator(8, ·) variant of the zoo entry: the same code, an 8×8 picture, a small file."""
    return dataclasses.replace(
        zoo.get("stylegan2-64"),
        name="stylegan2-8",
        build=lambda: Generator(8, 1),
        outputs=(image_spec("output_image", 8),),
    )


# --- ops, against independent formulations -------------------------------------------------


def reference_upfirdn2d(image: np.ndarray, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """Zero-insertion upsampling, padding (negative crops), true 2-D convolution, decimation."""
    height, width = image.shape
    upsampled = np.zeros((height * up, width * up))
    upsampled[::up, ::up] = image
    before, after = pad
    padded = np.pad(upsampled, ((max(before, 0), max(after, 0)), (max(before, 0), max(after, 0))))
    padded = padded[
        max(-before, 0) : padded.shape[0] - max(-after, 0), max(-before, 0) : padded.shape[1] - max(-after, 0)
    ]
    return convolve2d(padded, kernel, mode="valid")[::down, ::down]


@pytest.mark.parametrize(
    ("up", "down", "pad"),
    [(2, 1, (2, 1)), (1, 1, (1, 1)), (1, 2, (1, 1)), (2, 1, (1, 1)), (1, 1, (-1, 2))],
    ids=["upsample", "blur", "downsample", "upsample-conv-blur", "crop"],
)
def test_upfirdn2d_matches_zero_insertion_and_true_convolution(up: int, down: int, pad: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=generator)
    kernel = torch.rand(4, 4, generator=generator)  # asymmetric: a missing flip shows
    got = upfirdn2d(x, kernel, up=up, down=down, pad=pad).numpy()
    for n in range(2):
        for c in range(3):
            want = reference_upfirdn2d(
                x[n, c].numpy().astype(np.float64), kernel.numpy().astype(np.float64), up, down, pad
            )
            assert got[n, c].shape == want.shape
            np.testing.assert_allclose(got[n, c], want, rtol=1e-5, atol=1e-5)


def test_fused_leaky_relu_adds_bias_then_scales_by_root_two() -> None:
    x = torch.linspace(-3, 3, 2 * 4 * 5).reshape(2, 4, 5, 1)
    bias = torch.tensor([0.5, -0.5, 0.0, 2.0])
    shifted = x.numpy() + bias.numpy().reshape(1, 4, 1, 1)
    want = np.where(shifted >= 0, shifted, 0.2 * shifted) * math.sqrt(2)
    np.testing.assert_allclose(fused_leaky_relu(x, bias).numpy(), want, rtol=1e-6)


def per_sample_weight_conv(conv: ModulatedConv2d, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Upstream's default (fused) formulation: a modulated, demodulated weight per sample, then a grouped conv."""
    batch, cin, height, width = x.shape
    style = conv.modulation(w).reshape(batch, 1, cin, 1, 1)
    weight = conv.weight / math.sqrt(cin * conv.kernel_size**2) * style
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).reshape(batch, -1, 1, 1, 1)
    k = conv.kernel_size
    if conv.upsample:
        weight = weight.transpose(1, 2).reshape(batch * cin, -1, k, k)
        out = F.conv_transpose2d(x.reshape(1, batch * cin, height, width), weight, stride=2, groups=batch)
        return conv.blur(out.reshape(batch, -1, out.shape[2], out.shape[3]))
    out = F.conv2d(
        x.reshape(1, batch * cin, height, width), weight.reshape(-1, cin, k, k), padding=k // 2, groups=batch
    )
    return out.reshape(batch, -1, height, width)


@pytest.mark.parametrize(("kernel", "demodulate", "upsample"), [(3, True, False), (3, True, True), (1, False, False)])
def test_modulated_conv_equals_upstreams_per_sample_weight_formulation(
    kernel: int, demodulate: bool, upsample: bool
) -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(16, 8, kernel, demodulate=demodulate, upsample=upsample)
    x, w = torch.randn(3, 16, 6, 6), torch.randn(3, 512)
    with torch.no_grad():
        torch.testing.assert_close(conv(x, w), per_sample_weight_conv(conv, x, w), rtol=1e-4, atol=1e-5)


# --- upstream files ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size", "multiplier"), [("stylegan2-256", 256, 2), ("stylegan2-64", 64, 1)])
def test_network_has_upstreams_keys_and_shapes(name: str, size: int, multiplier: int) -> None:
    with torch.device("meta"):
        state = zoo.get(name).build().state_dict()
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    assert shapes == upstream_shapes(size, multiplier)
    assert len(shapes) == UPSTREAM_KEY_COUNT[name]
    if name == "stylegan2-256":
        for key, shape in UPSTREAM_256_SAMPLES.items():
            assert shapes[key] == shape, key


def adam_state(seed: int) -> dict[str, object]:
    params = [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(8))]
    optimizer = torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99))
    torch.stack([p.sum() for p in params]).sum().backward()
    optimizer.step()
    return optimizer.state_dict()


def test_rosinality_training_file_loads_g_ema(tmp_path: Path) -> None:
    shapes = upstream_shapes(8, 1)
    g, g_ema = random_state_dict(shapes, 1), random_state_dict(shapes, 2)
    torch.save(
        {
            "g": g,
            "d": {"convs.0.0.weight": torch.randn(64, 3, 1, 1)},
            "g_ema": g_ema,
            "g_optim": adam_state(0),
            "d_optim": adam_state(1),
            "args": argparse.Namespace(size=8, batch=16, r1=10.0, path_regularize=2.0, arch="stylegan2", augment=False),
            "ada_aug_p": 0.0,
        },
        tmp_path / "010000.pt",
    )
    state = instantiate(tiny(), tmp_path / "010000.pt").state_dict()
    assert state.keys() == g_ema.keys()
    assert all(torch.equal(state[key], g_ema[key]) for key in g_ema)


def mapping_mean(state: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Upstream's mapping network written out: PixelNorm, then 8 equalised (lr_mul 0.01) leaky layers."""
    x = z / torch.sqrt((z * z).mean(dim=1, keepdim=True) + 1e-8)
    for layer in range(1, 9):
        weight = state[f"style.{layer}.weight"] * (0.01 / math.sqrt(512))
        x = torch.nn.functional.leaky_relu(x @ weight.T + state[f"style.{layer}.bias"] * 0.01, 0.2) * math.sqrt(2)
    return x.mean(0, keepdim=True)


def test_truncation_latent_is_the_checkpoints_latent_avg_or_upstreams_mean_latent(tmp_path: Path) -> None:
    g_ema = random_state_dict(upstream_shapes(8, 1), 3)
    latent_avg = torch.randn(512)
    torch.save({"g_ema": g_ema, "latent_avg": latent_avg}, tmp_path / "converted.pt")
    torch.save(g_ema, tmp_path / "bare.pt")
    notes: list[str] = []
    with_avg = instantiate(tiny(), tmp_path / "converted.pt", notes=notes)
    assert isinstance(with_avg, Generator)
    assert torch.equal(with_avg.truncation_latent, latent_avg.reshape(1, 512))
    computed = instantiate(tiny(), tmp_path / "bare.pt", notes=notes)
    z = torch.randn(4096, 512, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(computed.truncation_latent, mapping_mean(g_ema, z), rtol=1e-4, atol=1e-5)
    assert len(notes) == 2 and "latent_avg" in notes[0] and "4096" in notes[1]  # what the export prints and records


def test_truncation_zero_gives_every_latent_the_average_picture(tmp_path: Path) -> None:
    torch.save({"g_ema": random_state_dict(upstream_shapes(8, 1), 4)}, tmp_path / "g.pt")
    model = tiny()
    graph = serving_module(model, tmp_path / "g.pt")
    z = latents_from_seed(0, 3, 512)
    (untruncated,) = run_pytorch(graph, model, {"z": z, "truncation": np.ones((3, 1), np.float32)})
    (collapsed,) = run_pytorch(graph, model, {"z": z, "truncation": np.zeros((3, 1), np.float32)})
    assert not np.array_equal(untruncated[0], untruncated[1])
    assert np.array_equal(collapsed[0], collapsed[1]) and np.array_equal(collapsed[1], collapsed[2])


# --- export -----------------------------------------------------------------------------------


def test_onnx_matches_pytorch_with_and_without_truncation(tmp_path: Path) -> None:
    model = zoo.get("stylegan2-64")
    shapes = upstream_shapes(64, 1)
    torch.save({"g_ema": random_state_dict(shapes, 5)}, tmp_path / "g.pt")
    graph = serving_module(model, tmp_path / "g.pt")
    cases = verification_cases(model)
    truncated = {"z": latents_from_seed(7, 2, 512), "truncation": np.array([[0.5], [0.8]], np.float32)}
    export_onnx(graph, model, cases[0], tmp_path / "model.onnx")
    parity = verify_onnx(graph, model, tmp_path / "model.onnx", [*cases, truncated])
    assert parity.passed, parity.describe()
    (image,) = run_pytorch(graph, model, cases[0])
    assert image.shape == (4, 64, 64, 3) and image.std() > 10  # a picture, not a flat field


# --- served through the embedded Triton -------------------------------------------------------


@pytest.fixture(scope="module")
def stylegan_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("stylegan2") / "models"
    export_model(ExportRequest(zoo.get("stylegan2-64"), repository, "stylegan2-64", batching=BatchingOptions(4)))
    options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server:
        yield server


@pytest.mark.e2e
def test_served_stylegan2_draws_the_pytorch_pictures_for_a_seed(stylegan_server: EmbeddedServer) -> None:
    model = zoo.get("stylegan2-64")
    with ProdgenClient(stylegan_server.options.grpc_url) as client:
        served = client.generate("stylegan2-64", seed=11, count=2, truncation=0.7)
    inputs = {"z": latents_from_seed(11, 2, 512), "truncation": np.full((2, 1), 0.7, np.float32)}
    (expected,) = run_pytorch(serving_module(model), model, inputs)
    assert served.shape == (2, 64, 64, 3) and served.dtype == np.uint8
    assert np.mean(np.abs(served.astype(int) - expected.astype(int)) <= 1) >= 0.999
