"""Stable-Diffusion checkpoints with seeded random weights, written with `save_pretrained`.

No weights can be downloaded here, so tests and benchmarks make their own: diffusers' and
transformers' real classes, saved in the standard folder layout. Two sizes: `tiny` (32/64
channel UNet, for tests: seconds on a CPU) and `sd15` (SD 1.5's UNet, VAE and CLIP text
encoder architecture, for honest timings). The CLIP tokenizer reads a vocab.json/merges.txt
written here (letters, digits and a few merges), so prompts tokenize the way SD's own files
tokenize them, only into more pieces.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Literal

import torch

Preset = Literal["tiny", "sd15"]

TEXT_LENGTH = 77
SD15_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "prediction_type": "epsilon",
}
"""SD 1.5's noise schedule; the pipeline model builds DDIM/Euler/DPM++ from the saved config."""

_TEXT_ENCODERS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
    "sd15": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "hidden_act": "quick_gelu",
    },
}
_UNETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "sample_size": 16,
        "layers_per_block": 1,
        "block_out_channels": (32, 64),
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 32,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    },
    # UNet2DConditionModel's defaults are SD 1.5's UNet but for the text width (768) and the
    # trained size, set small so CPU timings stay in seconds (32×32 latents: 256×256 pictures).
    "sd15": {"sample_size": 32, "cross_attention_dim": 768},
}
_VAES: dict[str, dict[str, Any]] = {
    "tiny": {
        "block_out_channels": (32, 64),
        "down_block_types": ("DownEncoderBlock2D",) * 2,
        "up_block_types": ("UpDecoderBlock2D",) * 2,
        "norm_num_groups": 32,
        "sample_size": 32,
    },
    "sd15": {
        "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2,
        "sample_size": 256,
        "scaling_factor": 0.18215,
    },
}


def write_tokenizer_files(folder: Path) -> None:
    letters = string.ascii_lowercase + string.digits + ".,!?'-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in letters:
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    merges = ["#version: 0.2", "t h", "th e</w>", "o n</w>", "a n", "e r</w>", "i n", "s t"]
    for merge in merges[1:]:
        vocab.setdefault("".join(merge.split(" ")), len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")


def random_components(
    preset: Preset = "tiny", inpainting: bool = False, seed: int = 0, cross_attention_dim: int | None = None
) -> dict[str, Any]:
    """unet, vae, text_encoder and scheduler with seeded random weights (eval mode)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet_config = dict(_UNETS[preset])
    if cross_attention_dim is not None:
        unet_config["cross_attention_dim"] = cross_attention_dim
    unet: Any = UNet2DConditionModel(in_channels=9 if inpainting else 4, out_channels=4, **unet_config)
    # Random weights predict noise of std ≈ 0.36; a trained UNet predicts unit-variance noise.
    with torch.no_grad():
        unet.conv_out.weight.mul_(2.5)
        unet.conv_out.bias.mul_(2.5)
    vae: Any = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **_VAES[preset])
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            vocab_size=128,
            max_position_embeddings=TEXT_LENGTH,
            layer_norm_eps=1e-5,
            **_TEXT_ENCODERS[preset],
        )
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "scheduler": DDIMScheduler(**SD15_SCHEDULER),
    }


def write_random_checkpoint(folder: Path, preset: Preset = "tiny", inpainting: bool = False, seed: int = 0) -> Path:
    """A `save_pretrained` folder of an SD 1.x-style pipeline (inpainting: 9-channel UNet)."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    parts = random_components(preset, inpainting, seed)
    vocabulary = folder.parent / f".{folder.name}-tokenizer-source"
    write_tokenizer_files(vocabulary)
    tokenizer = CLIPTokenizer.from_pretrained(str(vocabulary), model_max_length=TEXT_LENGTH)
    pipeline_class = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipeline: Any = pipeline_class(
        **parts, tokenizer=tokenizer, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipeline.save_pretrained(str(folder))
    return folder
