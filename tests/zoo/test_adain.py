"""AdaIN (naoto0804/pytorch-AdaIN): the two upstream files, the AdaIN maths, ONNX, served stylize.

Key names and shapes are written out from upstream's `net.py`: in `vgg` (53 layers, of
which 0..30 are used) the convolutions sit at indices 0 (1×1, 3→3), 2, 5, 9, 12, 16, 19,
22, 25, 29, 32, 35, 38, 42, 45, 48, 51; in `decoder` at 1, 5, 8, 11, 14, 18, 21, 25, 28.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prodgen import zoo
from prodgen.client import ProdgenClient
from prodgen.contract import ImageBounds
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.export.verify import run_pytorch, verify_onnx
from prodgen.model_repository.config import BatchingOptions
from prodgen.photos import fit, photo_batch, photograph
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.zoo.adain import adaptive_instance_normalization, calc_mean_std
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.samples import verification_cases
from tests_support import console_script, free_port

VGG_CONVS = {
    0: (3, 3, 1),
    2: (64, 3, 3),
    5: (64, 64, 3),
    9: (128, 64, 3),
    12: (128, 128, 3),
    16: (256, 128, 3),
    19: (256, 256, 3),
    22: (256, 256, 3),
    25: (256, 256, 3),
    29: (512, 256, 3),
    32: (512, 512, 3),
    35: (512, 512, 3),
    38: (512, 512, 3),
    42: (512, 512, 3),
    45: (512, 512, 3),
    48: (512, 512, 3),
    51: (512, 512, 3),
}
DECODER_CONVS = {
    1: (256, 512),
    5: (256, 256),
    8: (256, 256),
    11: (256, 256),
    14: (128, 256),
    18: (128, 128),
    21: (64, 128),
    25: (64, 64),
    28: (3, 64),
}
ENCODER_LAST = 29  # relu4_1's conv; upstream cuts vgg at [:31]


def upstream_files(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A `vgg_normalised.pth` (all 53 layers) and a `decoder.pth` with He-scaled random weights,
    the decoder's last layer set to give mid-grey pictures with visible structure."""
    generator = torch.Generator().manual_seed(seed)

    def conv(state: dict[str, torch.Tensor], index: int, cout: int, cin: int, k: int) -> None:
        state[f"{index}.weight"] = torch.randn(cout, cin, k, k, generator=generator) * math.sqrt(2 / (cin * k * k))
        state[f"{index}.bias"] = torch.randn(cout, generator=generator) * 0.01

    vgg: dict[str, torch.Tensor] = {}
    for index, (cout, cin, k) in VGG_CONVS.items():
        conv(vgg, index, cout, cin, k)
    decoder: dict[str, torch.Tensor] = {}
    for index, (cout, cin) in DECODER_CONVS.items():
        conv(decoder, index, cout, cin, 3)
    decoder["28.weight"] *= 0.3
    decoder["28.bias"] += 0.5
    return vgg, decoder


def save_upstream_files(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    vgg, decoder = upstream_files(seed)
    torch.save(vgg, folder / "vgg_normalised.pth")
    torch.save(decoder, folder / "decoder.pth")
    return folder / "vgg_normalised.pth", folder / "decoder.pth"


def small() -> zoo.ZooModel:
    """The zoo entry tuned for 64-pixel photos, so tests verify and serve quickly."""
    return dataclasses.replace(zoo.get("adain"), bounds=ImageBounds(min_side=32, max_side=256, opt_side=64))


def test_upstream_vgg_and_decoder_files_load_by_order(tmp_path: Path) -> None:
    vgg_path, decoder_path = save_upstream_files(tmp_path)
    vgg, decoder = upstream_files(0)
    state = instantiate(zoo.get("adain"), (vgg_path, decoder_path)).state_dict()
    expected = {f"vgg.{k}": v for k, v in vgg.items() if int(k.split(".")[0]) <= ENCODER_LAST}
    expected |= {f"decoder.{k}": v for k, v in decoder.items()}
    assert len(state) == 2 * (10 + 9)
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in expected)
    assert tuple(state["vgg.29.weight"].shape) == (512, 256, 3, 3)
    assert tuple(state["decoder.1.weight"].shape) == (256, 512, 3, 3)


def test_wrong_number_or_order_of_files_is_refused_in_one_line(tmp_path: Path) -> None:
    vgg_path, decoder_path = save_upstream_files(tmp_path)
    with pytest.raises(ProdgenError, match=r"takes 2 weight files \(vgg, decoder, in that order\): 1 given"):
        instantiate(zoo.get("adain"), vgg_path)
    with pytest.raises(ProdgenError, match="does not match architecture 'adain'"):
        instantiate(zoo.get("adain"), (decoder_path, vgg_path))
    with pytest.raises(ProdgenError, match="takes one weight file: 2 given"):
        instantiate(zoo.get("dcgan"), (vgg_path, decoder_path))


def test_export_cli_refuses_a_missing_weight_file_in_one_line(tmp_path: Path) -> None:
    vgg_path, _ = save_upstream_files(tmp_path)
    result = subprocess.run(
        [
            console_script("prodgen-export"),
            "adain",
            "--checkpoint",
            str(vgg_path),
            "--repository",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(lines) == 1 and "takes 2 weight files (vgg, decoder, in that order): 1 given" in lines[0]
    assert not (tmp_path / "models" / "adain").exists()


def test_export_cli_takes_one_checkpoint_per_weight_file_in_order(tmp_path: Path) -> None:
    vgg_path, decoder_path = save_upstream_files(tmp_path)
    result = subprocess.run(
        [
            console_script("prodgen-export"),
            "adain",
            "--checkpoint",
            str(vgg_path),
            "--checkpoint",
            str(decoder_path),
            "--repository",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    provenance = json.loads((tmp_path / "models" / "adain" / "1" / "prodgen-export.json").read_text())
    assert provenance["checkpoint"] == [str(vgg_path), str(decoder_path)]
    assert len(provenance["checkpoint_sha256"]) == 2


def test_adain_gives_content_features_the_style_statistics() -> None:
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(2, 4, 6, 5, generator=generator) * 3 + 1
    style = torch.randn(2, 4, 7, 3, generator=generator) * 0.5 - 2
    mean, std = calc_mean_std(content)
    flat = content.flatten(2).numpy()
    np.testing.assert_allclose(mean.flatten(1).numpy(), flat.mean(axis=2), rtol=1e-5)
    np.testing.assert_allclose(std.flatten(1).numpy(), np.sqrt(flat.var(axis=2, ddof=1) + 1e-5), rtol=1e-5)
    out = adaptive_instance_normalization(content, style).flatten(2).numpy()
    style_flat = style.flatten(2).numpy()
    np.testing.assert_allclose(out.mean(axis=2), style_flat.mean(axis=2), atol=1e-5)
    np.testing.assert_allclose(out.std(axis=2, ddof=1), style_flat.std(axis=2, ddof=1), rtol=1e-3)


def test_alpha_zero_ignores_the_style_and_sizes_may_differ(tmp_path: Path) -> None:
    model = small()
    graph = serving_module(model, save_upstream_files(tmp_path))
    content = photo_batch(1, 45, 70, offset=0)
    alpha = np.zeros((1, 1), np.float32)
    (first,) = run_pytorch(
        graph, model, {"input_image": content, "style_image": photo_batch(1, 64, 64, 1), "alpha": alpha}
    )
    (second,) = run_pytorch(
        graph, model, {"input_image": content, "style_image": photo_batch(1, 40, 90, 2), "alpha": alpha}
    )
    (styled,) = run_pytorch(
        graph, model, {"input_image": content, "style_image": photo_batch(1, 40, 90, 2), "alpha": alpha + 1}
    )
    assert first.shape == (1, 45, 70, 3)
    assert np.array_equal(first, second)
    assert not np.array_equal(second, styled)


def test_onnx_matches_pytorch_on_photos_of_different_sizes(tmp_path: Path) -> None:
    model = small()
    graph = serving_module(model, save_upstream_files(tmp_path))
    cases = verification_cases(model)
    mixed = {
        "input_image": photo_batch(2, 50, 75, offset=3),
        "style_image": photo_batch(2, 96, 40, offset=4),
        "alpha": np.array([[0.3], [1.0]], np.float32),
    }
    export_onnx(graph, model, cases[0], tmp_path / "model.onnx")
    parity = verify_onnx(graph, model, tmp_path / "model.onnx", [*cases, mixed])
    assert parity.passed, parity.describe()
    (image,) = run_pytorch(graph, model, mixed)
    assert image.std() > 10  # a picture, not a flat field


@pytest.fixture(scope="module")
def adain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    folder = tmp_path_factory.mktemp("adain")
    request = ExportRequest(
        small(), folder / "models", "adain", checkpoint=save_upstream_files(folder), batching=BatchingOptions(4)
    )
    export_model(request)
    options = ServerOptions(folder / "models", grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server:
        yield server


@pytest.mark.e2e
def test_stylize_cli_with_style_and_alpha_matches_pytorch(adain_server: EmbeddedServer, tmp_path: Path) -> None:
    photo, style = fit(photograph("chelsea"), 72, 96), fit(photograph("coffee"), 64, 64)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(style).save(tmp_path / "style.png")
    result = subprocess.run(
        [
            console_script("prodgen"),
            "stylize",
            "adain",
            str(tmp_path / "photo.png"),
            "--style",
            str(tmp_path / "style.png"),
            "--alpha",
            "0.8",
            "--out",
            str(tmp_path / "out"),
            "--url",
            adain_server.options.grpc_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    served = np.asarray(Image.open(tmp_path / "out" / "photo.png").convert("RGB"))
    model = small()
    graph = serving_module(model, save_upstream_files(tmp_path))
    inputs = {
        "input_image": photo[np.newaxis].copy(),
        "style_image": style[np.newaxis].copy(),
        "alpha": np.full((1, 1), 0.8, np.float32),
    }
    (expected,) = run_pytorch(graph, model, inputs)
    assert served.shape == (72, 96, 3)
    assert np.mean(np.abs(served.astype(int) - expected[0].astype(int)) <= 1) >= 0.999
    with ProdgenClient(adain_server.options.grpc_url) as client:
        with pytest.raises(ProdgenError, match="needs a style image"):
            client.stylize("adain", photo)
