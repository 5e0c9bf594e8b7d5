"""Tiny Stable-Diffusion checkpoints written by the tests themselves (no download).

Real diffusers/transformers classes with small configs, saved with `save_pretrained` in the
standard layout; the CLIP tokenizer reads a vocab.json/merges.txt written here (single
letters and a few merges), so prompts tokenize as they would with SD's own files.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

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


def tiny_components(inpainting: bool = False, seed: int = 0, cross_attention_dim: int = 32) -> dict[str, object]:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    # Random weights predict noise of std ≈ 0.36; a trained UNet predicts unit-variance noise.
    with torch.no_grad():
        unet.conv_out.weight.mul_(2.5)
        unet.conv_out.bias.mul_(2.5)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=128,
            max_position_embeddings=TEXT_LENGTH,
            layer_norm_eps=1e-5,
        )
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer_class": CLIPTokenizer,
        "scheduler": DDIMScheduler(**SD15_SCHEDULER),
    }


def write_tiny_checkpoint(folder: Path, inpainting: bool = False, seed: int = 0) -> Path:
    """A `save_pretrained` folder of a tiny SD 1.x-style pipeline (inpainting: 9-channel UNet)."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    parts = tiny_components(inpainting, seed)
    vocabulary = folder.parent / f".{folder.name}-tokenizer-source"
    write_tokenizer_files(vocabulary)
    tokenizer_class = parts.pop("tokenizer_class")
    tokenizer = tokenizer_class.from_pretrained(str(vocabulary), model_max_length=TEXT_LENGTH)  # type: ignore[attr-defined]
    pipeline_class = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipeline = pipeline_class(
        **parts, tokenizer=tokenizer, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipeline.save_pretrained(str(folder))
    return folder
