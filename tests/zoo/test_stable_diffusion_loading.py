"""Stable-Diffusion folders as the hub ships them: fp16-only weights variants, loaded offline and in FP32."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from prodgen.errors import ProdgenError
from prodgen.zoo.stable_diffusion import load_stable_diffusion, shipped_variant


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection fails, whatever HF_HUB_OFFLINE says."""

    def refuse(*_: object, **__: object) -> None:
        raise OSError("network access attempted during loading")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.fixture(scope="module")
def fp16_folder(diffusion_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SD folder saved as the hub ships fp16 repositories: only `*.fp16.safetensors` weights."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(
        str(diffusion_checkpoints["sd"]), safety_checker=None, requires_safety_checker=False
    ).to(torch.float16)
    folder = tmp_path_factory.mktemp("fp16-only") / "sd"
    pipeline.save_pretrained(str(folder), variant="fp16")
    return folder


def test_an_fp16_only_folder_loads_in_fp32_without_network(
    fp16_folder: Path, diffusion_checkpoints: dict[str, Path], no_network: None
) -> None:
    assert sorted(item.name for item in (fp16_folder / "unet").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
    ]
    assert shipped_variant(fp16_folder) == "fp16"
    assert shipped_variant(diffusion_checkpoints["sd"]) is None
    for model in (load_stable_diffusion(fp16_folder), load_stable_diffusion(fp16_folder, "fp16")):
        full = load_stable_diffusion(diffusion_checkpoints["sd"])
        for network, reference in (
            (model.unet, full.unet),
            (model.vae, full.vae),
            (model.text_encoder, full.text_encoder),
        ):
            theirs = reference.state_dict()
            for name, value in network.state_dict().items():
                if value.is_floating_point():
                    assert value.dtype == torch.float32, name
                    torch.testing.assert_close(value, theirs[name].half().float(), rtol=0, atol=0, msg=name)


def test_a_missing_variant_is_one_line(fp16_folder: Path, tmp_path: Path, no_network: None) -> None:
    with pytest.raises(ProdgenError, match=r"cannot load the unet: .*"):
        load_stable_diffusion(fp16_folder, "bf16")
    mixed = Path(shutil.copytree(fp16_folder, tmp_path / "mixed"))
    weights = mixed / "vae" / "diffusion_pytorch_model.fp16.safetensors"
    weights.rename(weights.with_name("diffusion_pytorch_model.ema.safetensors"))
    with pytest.raises(ProdgenError, match="weights only as variants ema, fp16; choose one with --variant"):
        load_stable_diffusion(mixed)
