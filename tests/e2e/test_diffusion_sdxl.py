"""Served SDXL pipelines (base, inpainting, refiner hand-off) against diffusers' own SDXL pipelines, over gRPC.

Tiny SDXL-style checkpoints (two text encoders, the "text_time" added conditions; a refiner with
text_encoder_2 only and an aesthetic score) are written with diffusers' save_pretrained, exported
with `export_stable_diffusion` and served; both sides get prodgen's seeded noise as `latents`
(or through diffusers' noise function), as tests/e2e/test_diffusion.py does for SD 1.x.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from e2e.test_diffusion import (
    GUIDANCE,
    PROMPT,
    SIDE,
    assert_close,
    diffusers_scheduler,
    image_latents,
    kept_put_back,
    noise_for,
    pixels_of,
    seeded_noise,
    square_mask,
)
from PIL import Image

from prodgen.client import ProdgenClient, Sampling
from prodgen.client.diffusion import XlConditions
from prodgen.errors import ProdgenError
from prodgen.model_repository.config import BatchingOptions
from prodgen.photos import photo_batch
from prodgen.serve.server import EmbeddedServer, ServerOptions
from tests_support import console_script, free_port

pytestmark = pytest.mark.e2e

STEPS = 4
HANDOFF = 0.6
KINDS = {"sdxl": "base", "sdxl_inpaint": "inpaint", "sdxl_refiner": "refiner"}
INPAINT_MODULE = "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_inpaint"


@pytest.fixture(scope="module")
def sdxl_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from prodgen.zoo.stable_diffusion_random import write_random_sdxl_checkpoint

    folder = tmp_path_factory.mktemp("sdxl-checkpoints")
    return {
        name: write_random_sdxl_checkpoint(folder / name, kind, seed=index)  # type: ignore[arg-type]
        for index, (name, kind) in enumerate(KINDS.items())
    }


@pytest.fixture(scope="module")
def sdxl_exports(sdxl_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from prodgen.export.stable_diffusion import export_stable_diffusion

    repository = tmp_path_factory.mktemp("sdxl-repository") / "models"
    batching = BatchingOptions(max_batch_size=2)
    return {
        name: export_stable_diffusion(folder, repository, name, batching) for name, folder in sdxl_checkpoints.items()
    }


@pytest.fixture(scope="module")
def sdxl_server(sdxl_exports: dict[str, Any]) -> Iterator[EmbeddedServer]:
    repository = next(iter(sdxl_exports.values())).pipeline.model_dir.parent
    options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server:
        yield server


@pytest.fixture(scope="module")
def client(sdxl_server: EmbeddedServer) -> Iterator[ProdgenClient]:
    with ProdgenClient(sdxl_server.options.grpc_url, timeout_s=300) as connected:
        yield connected


def reference(kind: str, folder: Path, scheduler: str) -> Any:
    import diffusers

    pipeline = getattr(diffusers, kind).from_pretrained(str(folder))
    pipeline.scheduler = diffusers_scheduler(scheduler, pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def as_uint8(pictures: np.ndarray) -> np.ndarray:
    return (pictures * 255).round().astype(np.uint8)


def test_components_match_pytorch_and_sdxl_has_its_parts(sdxl_exports: dict[str, Any]) -> None:
    for name, export in sdxl_exports.items():
        parts = {component.name.removeprefix(f"{name}_") for component in export.components}
        first_encoder = set() if name == "sdxl_refiner" else {"text_encoder"}
        assert parts == first_encoder | {"text_encoder_2", "unet", "vae_decoder", "vae_encoder"}
        for component in export.components:
            assert component.parity.passed, f"{component.name}: {component.parity.describe()}"
        config = (export.pipeline.model_dir / "config.pbtxt").read_text()
        assert "time_ids_length" in config


def test_txt2img_matches_diffusers(client: ProdgenClient, sdxl_checkpoints: dict[str, Path]) -> None:
    """Both encoders' penultimate states side by side, the pooled projection, the time ids and the
    zeroed negative conditioning (force_zeros_for_empty_prompt) all reach the UNet as diffusers' do, with
    an original size and crop of the caller's. (The schedulers themselves are compared in test_diffusion.py.)"""
    seed, scheduler = 7, "dpmpp-2m"
    original, crop = (96, 64), (8, 4)
    conditions = XlConditions(original_size=original, crop_top_left=crop)
    sampling = Sampling(seed, 1, STEPS, GUIDANCE, scheduler)
    served = client.txt2img("sdxl", PROMPT, sampling, SIDE, SIDE, conditions)
    pipeline = reference("StableDiffusionXLPipeline", sdxl_checkpoints["sdxl"], scheduler)
    expected = pipeline(
        PROMPT, height=SIDE, width=SIDE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        latents=seeded_noise(seed), original_size=original, crops_coords_top_left=crop, output_type="np",
    ).images  # fmt: skip
    assert_close(f"sdxl txt2img {scheduler}", as_uint8(expected), served)


def test_base_to_refiner_handoff_matches_diffusers(client: ProdgenClient, sdxl_checkpoints: dict[str, Path]) -> None:
    """One call per model: the base stops at denoising_end and returns latents, the refiner continues
    from them at denoising_start, as diffusers' base (output_type='latent') and refiner do."""
    seed, scheduler = 12, "euler"
    sampling = Sampling(seed, 1, STEPS, GUIDANCE, scheduler)
    latents = client.txt2latents("sdxl", PROMPT, HANDOFF, sampling, SIDE, SIDE)
    base = reference("StableDiffusionXLPipeline", sdxl_checkpoints["sdxl"], scheduler)
    expected_latents = base(
        PROMPT, height=SIDE, width=SIDE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        latents=seeded_noise(seed), denoising_end=HANDOFF, output_type="latent",
    ).images  # fmt: skip
    assert latents.shape == tuple(expected_latents.shape)
    scale = float(expected_latents.abs().max())
    assert float(np.abs(latents - expected_latents.numpy()).max()) <= 1e-3 * max(1.0, scale)

    served = client.refine("sdxl_refiner", PROMPT, latents, HANDOFF, sampling)
    refiner = reference("StableDiffusionXLImg2ImgPipeline", sdxl_checkpoints["sdxl_refiner"], scheduler)
    expected = refiner(
        PROMPT, image=expected_latents, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        denoising_start=HANDOFF, output_type="np",
    ).images  # fmt: skip
    assert served.shape == (1, SIDE, SIDE, 3)
    assert_close("sdxl base → refiner hand-off", as_uint8(expected), served)


def test_inpaint_matches_diffusers(client: ProdgenClient, sdxl_checkpoints: dict[str, Path]) -> None:
    seed, scheduler = 3, "euler"
    photo = photo_batch(1, SIDE, SIDE, offset=1)[0]
    mask = square_mask()
    served = client.inpaint("sdxl_inpaint", PROMPT, photo, mask, sampling=Sampling(seed, 1, STEPS, GUIDANCE, scheduler))
    pipeline = reference("StableDiffusionXLInpaintPipeline", sdxl_checkpoints["sdxl_inpaint"], scheduler)
    keep = torch.from_numpy(mask < 128)[None, None]
    with noise_for(INPAINT_MODULE, seeded_noise(seed)):
        expected = pipeline(
            PROMPT, image=Image.fromarray(photo), mask_image=Image.fromarray(mask), height=SIDE, width=SIDE,
            masked_image_latents=image_latents(pipeline, pixels_of(photo) * keep), strength=1.0,
            num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="np",
        ).images  # fmt: skip
    assert_close("sdxl inpaint", kept_put_back(as_uint8(expected), photo, mask), served)


def test_handoff_inputs_are_checked(client: ProdgenClient) -> None:
    latents = np.zeros((1, 4, SIDE // 2, SIDE // 2), np.float32)
    with pytest.raises(ProdgenError, match="denoising_end 1.5: expected a fraction"):
        client.txt2latents("sdxl", PROMPT, 1.5, Sampling(steps=2), SIDE, SIDE)
    with pytest.raises(ProdgenError, match="input 'denoising_start' needs 'latents'"):
        client.infer(
            "sdxl_refiner", {"prompt": np.array([[b"x"]], object), "denoising_start": np.array([[0.5]], np.float32)}
        )
    with pytest.raises(ProdgenError, match="input 'latents': contains NaN"):
        client.refine("sdxl_refiner", PROMPT, np.full_like(latents, np.nan), 0.5, Sampling(steps=2))
    assert client.refine("sdxl_refiner", PROMPT, latents, 0.5, Sampling(steps=2)).shape == (1, SIDE, SIDE, 3)


def test_models_command_shows_the_family(sdxl_server: EmbeddedServer) -> None:
    url = sdxl_server.options.grpc_url
    done = subprocess.run(
        [console_script("prodgen"), "models", "--json", "--url", url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    families = {entry["name"]: entry["family"] for entry in json.loads(done.stdout)}
    assert families["sdxl"] == "SDXL" and families["sdxl_inpaint"] == "SDXL"
    assert families["sdxl_refiner"] == "SDXL refiner"
    assert families["sdxl_unet"] is None
