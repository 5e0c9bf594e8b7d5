"""`prodgen-export stable-diffusion --preview-decoder TAESD`: a second pipeline `NAME_preview` decoding with
a tiny autoencoder, drawing what diffusers draws with that autoencoder in place of the VAE.

The tiny autoencoder is diffusers' own `AutoencoderTiny` (the class madebyollin/taesd ships as),
random weights at the tiny checkpoint's scale (×2, one upsampling), saved as the hub lays it out."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from prodgen.export.fidelity import psnr_db
from prodgen.model_repository.config import parse_pbtxt
from prodgen.model_repository.direct_pipeline import DirectPipeline
from prodgen.model_repository.pipeline_components import component_models
from prodgen.seeding import latent_from_seed
from tests_support import console_script

NAME = "shop"
SIDE = 32
STEPS = 3
SEED = 4
GUIDANCE = 7.5
PROMPT = "a red cup on a table"


def _tiny_autoencoder(folder: Path, upsamplings: int = 1) -> Path:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    blocks = upsamplings + 1
    autoencoder: Any = AutoencoderTiny(
        encoder_block_out_channels=(8,) * blocks,
        decoder_block_out_channels=(8,) * blocks,
        num_encoder_blocks=(1,) * blocks,
        num_decoder_blocks=(1,) * blocks,
    )
    autoencoder.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def preview_export(diffusion_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    folder = tmp_path_factory.mktemp("preview")
    taesd = _tiny_autoencoder(folder / "taesd")
    repository = folder / "models"
    command = [
        console_script("prodgen-export"), "stable-diffusion", "--checkpoint", str(diffusion_checkpoints["sd"]),
        "--name", NAME, "--repository", str(repository), "--preview-decoder", str(taesd),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return repository, taesd, done.stdout


def test_the_preview_pipeline_decodes_with_the_tiny_autoencoder_and_says_so(preview_export: tuple) -> None:
    repository, _, printed = preview_export
    assert component_models(repository, f"{NAME}_preview")["vae_decoder"] == "shop_vae_decoder_taesd"
    assert component_models(repository, NAME)["vae_decoder"] == "shop_vae_decoder"
    config = parse_pbtxt((repository / "shop_preview" / "config.pbtxt").read_text())
    assert "lower fidelity" in config.parameters["prodgen.preview_decoder"].string_value
    assert "prodgen.preview_decoder" not in parse_pbtxt((repository / NAME / "config.pbtxt").read_text()).parameters
    assert "shop_preview: preview pipeline published" in printed


def test_preview_pictures_are_what_diffusers_draws_with_the_tiny_autoencoder(
    preview_export: tuple, diffusion_checkpoints: dict[str, Path]
) -> None:
    from diffusers import AutoencoderTiny, DDIMScheduler, StableDiffusionPipeline

    repository, taesd, _ = preview_export
    drawn = DirectPipeline(repository, f"{NAME}_preview", threads=1).picture(
        PROMPT, SEED, STEPS, GUIDANCE, "ddim", SIDE
    )
    pipeline = StableDiffusionPipeline.from_pretrained(
        str(diffusion_checkpoints["sd"]),
        vae=AutoencoderTiny.from_pretrained(taesd),
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    shape = (1, 4, SIDE // 2, SIDE // 2)
    latents = torch.from_numpy(latent_from_seed(SEED, int(np.prod(shape))).reshape(shape))
    with torch.no_grad():
        images = pipeline(
            PROMPT, height=SIDE, width=SIDE, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=latents,
            output_type="np",
        ).images  # fmt: skip
    expected = (images * 255).round().astype(np.uint8)
    assert drawn.shape == expected.shape
    assert psnr_db([expected], [drawn]) >= 40.0
    full = DirectPipeline(repository, NAME, threads=1).picture(PROMPT, SEED, STEPS, GUIDANCE, "ddim", SIDE)
    assert psnr_db([full], [drawn]) < 30.0  # another decoder: not the VAE's picture


def test_a_preview_decoder_of_another_scale_is_refused_in_one_line(
    diffusion_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    taesd = _tiny_autoencoder(tmp_path / "taesd-x8", upsamplings=3)
    command = [
        console_script("prodgen-export"), "stable-diffusion", "--checkpoint", str(diffusion_checkpoints["sd"]),
        "--repository", str(tmp_path / "models"), "--preview-decoder", str(taesd),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "×8" in done.stderr and "×2" in done.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
