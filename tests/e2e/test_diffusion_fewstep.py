"""Few-step checkpoints (LCM-distilled, SD-Turbo-style) and fused LoRAs, served, against diffusers' own pipelines.

As in test_diffusion.py, both sides get the same checkpoint, prompt, steps, guidance and initial noise; the
stochastic schedulers' fresh noise at each step is prodgen's too (`latent_from_seed(derived_seed(seed, k))`),
handed to diffusers through its scheduler module's `randn_tensor`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_diffusion_loras import write_kohya_lora, write_peft_lora

from prodgen.canary import judge, read_canary
from prodgen.client import ProdgenClient, Sampling
from prodgen.export.fidelity import psnr_db
from prodgen.model_repository.config import BatchingOptions
from prodgen.seeding import derived_seed, latent_from_seed
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.zoo.stable_diffusion_lora import Lora
from tests_support import free_port

pytestmark = pytest.mark.e2e

SIDE = 32
PROMPT = "a studio photo of a red sneaker on a white table"
MIN_PSNR_DB = 40.0
LATENT_SHAPE = (4, SIDE // 2, SIDE // 2)


def seeded(seed: int) -> torch.Tensor:
    return torch.from_numpy(latent_from_seed(seed, int(np.prod(LATENT_SHAPE))).reshape(1, *LATENT_SHAPE))


def step_noise(seed: int, step: int) -> torch.Tensor:
    return seeded(derived_seed(seed, step))


@contextmanager
def fresh_noise(pipeline: Any, seed: int) -> Iterator[None]:
    """The scheduler's per-step draws become prodgen's per-step noise for `seed` (step k: its step_index)."""
    scheduler = pipeline.scheduler
    module = sys.modules[type(scheduler).__module__]
    original = getattr(module, "randn_tensor")  # noqa: B009 - diffusers builds the module's names at run time
    setattr(module, "randn_tensor", lambda shape, **_: step_noise(seed, scheduler.step_index).reshape(shape))  # noqa: B010
    try:
        yield
    finally:
        setattr(module, "randn_tensor", original)  # noqa: B010


def as_uint8(pictures: np.ndarray) -> np.ndarray:
    return (pictures * 255).round().astype(np.uint8)


def write_lcm_checkpoint(folder: Path) -> Path:
    """A tiny LCM-distilled folder: the tiny SD UNet with a guidance embedding (time_cond_proj_dim) and
    diffusers' LCMScheduler, saved by diffusers' LatentConsistencyModelPipeline."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    from prodgen.zoo.stable_diffusion_random import SD15_SCHEDULER, random_components, write_random_checkpoint

    base = write_random_checkpoint(folder.parent / f"{folder.name}-base", seed=3)
    parts = random_components(seed=3)
    torch.manual_seed(4)
    # without diffusers' private keys: `_use_default_values` would reset time_cond_proj_dim to its default
    own = {key: value for key, value in parts["unet"].config.items() if not key.startswith("_")}
    unet_config = {**own, "time_cond_proj_dim": 32}
    unet = UNet2DConditionModel.from_config(unet_config).eval()
    with torch.no_grad():
        unet.conv_out.weight.mul_(2.5)
    scheduler = LCMScheduler(**{**SD15_SCHEDULER, "set_alpha_to_one": True, "steps_offset": 0})
    pipeline: Any = LatentConsistencyModelPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=CLIPTokenizer.from_pretrained(str(base / "tokenizer")),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(str(folder))
    return folder


def write_turbo_checkpoint(folder: Path) -> Path:
    """A tiny SD-Turbo-style folder: the tiny SD pipeline with Euler Ancestral and trailing spacing."""
    from prodgen.zoo.stable_diffusion_random import write_random_checkpoint

    write_random_checkpoint(folder, seed=5)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update({"_class_name": "EulerAncestralDiscreteScheduler", "timestep_spacing": "trailing"})
    config_path.write_text(json.dumps(config))
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "EulerAncestralDiscreteScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def fewstep_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fewstep-checkpoints")
    return {"lcm": write_lcm_checkpoint(folder / "lcm"), "turbo": write_turbo_checkpoint(folder / "turbo")}


@pytest.fixture(scope="module")
def loras(fewstep_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Lora]:
    """Two LoRAs for the Turbo-style folder (a plain SD 1.x UNet and text encoder), one in each published
    layout, at scales other than 1."""
    from prodgen.zoo.stable_diffusion import load_stable_diffusion

    folder = tmp_path_factory.mktemp("loras")
    base = load_stable_diffusion(fewstep_checkpoints["turbo"])
    kohya = write_kohya_lora(folder / "shoe_style_kohya.safetensors", base.unet, base.text_encoder)
    peft = write_peft_lora(folder / "studio_light_peft.safetensors", base.unet, base.text_encoder)
    return [Lora(kohya, 0.8), Lora(peft, 1.2)]


@pytest.fixture(scope="module")
def fewstep_exports(
    fewstep_checkpoints: dict[str, Path], loras: list[Lora], tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """`lcm`, and `turbo`: the Turbo-style folder with both LoRAs fused (one export serves both checks)."""
    from prodgen.export.stable_diffusion import export_stable_diffusion

    repository = tmp_path_factory.mktemp("fewstep-repository") / "models"
    batching = BatchingOptions(max_batch_size=2)
    return {
        "lcm": export_stable_diffusion(fewstep_checkpoints["lcm"], repository, "lcm", batching),
        "turbo": export_stable_diffusion(fewstep_checkpoints["turbo"], repository, "turbo", batching, loras=loras),
    }


def with_loras(folder: Path, loras: list[Lora]) -> Any:
    """diffusers' StableDiffusionPipeline with the LoRAs fused its documented way (load each, set_adapters
    with the scales, fuse_lora, unload_lora_weights)."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    names = [f"lora{index}" for index in range(len(loras))]
    for lora, adapter in zip(loras, names, strict=True):
        pipeline.load_lora_weights(str(lora.path), adapter_name=adapter)
    pipeline.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    pipeline.fuse_lora(adapter_names=names)
    pipeline.unload_lora_weights()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def client(fewstep_exports: dict) -> Iterator[ProdgenClient]:
    repository = next(iter(fewstep_exports.values())).pipeline.model_dir.parent
    options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server, ProdgenClient(server.options.grpc_url, timeout_s=300) as connected:
        yield connected


def assert_close(label: str, expected: np.ndarray, served: np.ndarray) -> None:
    assert expected.shape == served.shape and served.dtype == np.uint8
    value = psnr_db([expected], [served])
    print(f"{label}: PSNR {value:.2f} dB")
    assert value >= MIN_PSNR_DB


@pytest.mark.parametrize("steps", [1, 4])
def test_lcm_matches_diffusers_lcm_pipeline(
    client: ProdgenClient, fewstep_checkpoints: dict[str, Path], steps: int
) -> None:
    from diffusers import LatentConsistencyModelPipeline

    seed, guidance = 12, 8.5
    served = client.txt2img("lcm", PROMPT, Sampling(seed, 1, steps, guidance, "lcm"), SIDE, SIDE)
    pipeline = LatentConsistencyModelPipeline.from_pretrained(str(fewstep_checkpoints["lcm"]), safety_checker=None)
    pipeline.set_progress_bar_config(disable=True)
    with fresh_noise(pipeline, seed):
        expected = pipeline(
            PROMPT,
            height=SIDE,
            width=SIDE,
            num_inference_steps=steps,
            guidance_scale=guidance,
            latents=seeded(seed),
            output_type="np",
        ).images
    assert_close(f"LCM {steps} steps", as_uint8(expected), served)


@pytest.mark.parametrize("steps", [1, 4])
def test_turbo_style_matches_diffusers_without_guidance(
    client: ProdgenClient, fewstep_checkpoints: dict[str, Path], loras: list[Lora], steps: int
) -> None:
    seed = 30
    served = client.txt2img("turbo", PROMPT, Sampling(seed, 1, steps, 0.0, "euler-ancestral"), SIDE, SIDE)
    pipeline = with_loras(fewstep_checkpoints["turbo"], loras)
    assert type(pipeline.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    with fresh_noise(pipeline, seed):
        expected = pipeline(
            PROMPT,
            height=SIDE,
            width=SIDE,
            num_inference_steps=steps,
            guidance_scale=0.0,
            latents=seeded(seed),  # the pipeline scales it by init_noise_sigma
            output_type="np",
        ).images
    assert_close(f"Turbo-style + 2 LoRAs, {steps} steps", as_uint8(expected), served)


def test_the_served_facts_name_the_family_and_its_defaults(client: ProdgenClient) -> None:
    lcm = client.model("lcm").facts.diffusion
    turbo = client.model("turbo").facts.diffusion
    assert lcm is not None and turbo is not None
    assert (lcm.family, lcm.guidance_embedding_dim) == ("LCM", 32)
    assert (turbo.family, turbo.guidance_embedding_dim) == ("Turbo-style", 0)
    assert {"lcm", "euler-ancestral", "tcd"} <= set(turbo.schedulers.split(","))
    # the defaults are the family's: one Turbo step without guidance gives the picture asked for explicitly
    default = client.txt2img("turbo", PROMPT, Sampling(seed=2), SIDE, SIDE)
    explicit = client.txt2img("turbo", PROMPT, Sampling(2, 1, 1, 0.0, "euler-ancestral"), SIDE, SIDE)
    np.testing.assert_array_equal(default, explicit)


def test_two_fused_loras_match_diffusers_load_lora_weights_and_fuse_lora(
    client: ProdgenClient, fewstep_checkpoints: dict[str, Path], loras: list[Lora], fewstep_exports: dict
) -> None:
    """A kohya LoRA at 0.8 and a PEFT one at 1.2 fused at export, against diffusers' documented multi-LoRA
    fuse, with classifier-free guidance and a deterministic scheduler."""
    from diffusers import EulerDiscreteScheduler

    seed, steps, guidance = 8, 4, 7.5
    served = client.txt2img("turbo", PROMPT, Sampling(seed, 1, steps, guidance, "euler"), SIDE, SIDE)
    pipeline = with_loras(fewstep_checkpoints["turbo"], loras)
    pipeline.scheduler = EulerDiscreteScheduler.from_config(pipeline.scheduler.config)
    expected = pipeline(
        PROMPT,
        height=SIDE,
        width=SIDE,
        num_inference_steps=steps,
        guidance_scale=guidance,
        latents=seeded(seed),
        output_type="np",
    ).images
    assert_close("SD + kohya LoRA @0.8 + PEFT LoRA @1.2", as_uint8(expected), served)

    facts = client.model("turbo").facts.diffusion
    assert facts is not None and facts.loras == "shoe_style_kohya.safetensors@0.8,studio_light_peft.safetensors@1.2"
    unet = next(c for c in fewstep_exports["turbo"].components if c.name.endswith("_unet"))
    provenance = json.loads((unet.published.version_dir / "prodgen-export.json").read_text())
    assert [(Path(entry["file"]).name, entry["scale"]) for entry in provenance["loras_fused"]] == [
        ("shoe_style_kohya.safetensors", 0.8),
        ("studio_light_peft.safetensors", 1.2),
    ]
    # the fused UNet records a canary like any export, and the served version passes it (what deploy checks)
    canary = read_canary(unet.published.version_dir, provenance["canary"])
    verdict = judge(canary, client.infer(unet.name, canary.inputs))
    assert verdict.passed, verdict.describe()
