"""Stable-Diffusion checkpoints with seeded random weights, written with `save_pretrained`.

No weights can be downloaded here, so tests and benchmarks make their own: diffusers' and
transformers' real classes, saved in the standard folder layout (SD 1.x-style, and SDXL-style
base, inpainting and refiner folders: `write_random_sdxl_checkpoint`). Two sizes: `tiny` (32/64
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

from prodgen.zoo.stable_diffusion import require_diffusion_libraries

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


def _text_encoder_config(preset: Preset, **overrides: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        vocab_size=128,
        max_position_embeddings=TEXT_LENGTH,
        layer_norm_eps=1e-5,
        **{**_TEXT_ENCODERS[preset], **overrides},
    )


def random_components(
    preset: Preset = "tiny", inpainting: bool = False, seed: int = 0, cross_attention_dim: int | None = None
) -> dict[str, Any]:
    """unet, vae, text_encoder and scheduler with seeded random weights (eval mode)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

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
    text_encoder = CLIPTextModel(_text_encoder_config(preset))
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "scheduler": DDIMScheduler(**SD15_SCHEDULER),
    }


def _text_encoder_as_the_hub_saves_it(component: Path) -> None:
    """transformers ≥ 5.6 saves CLIPTextModel's weights without the `text_model.` prefix every hub
    checkpoint has, and older transformers (optimum-intel's environment, the bench's OpenVINO peer) then
    silently start that text encoder from random weights; with the prefix, both load the same model."""
    from safetensors.torch import load_file, save_file

    for weights in component.glob("*.safetensors"):
        state = load_file(str(weights))
        renamed = {name if name.startswith("text_model.") else f"text_model.{name}": t for name, t in state.items()}
        save_file(renamed, str(weights), metadata={"format": "pt"})


def write_random_checkpoint(folder: Path, preset: Preset = "tiny", inpainting: bool = False, seed: int = 0) -> Path:
    """A `save_pretrained` folder of an SD 1.x-style pipeline (inpainting: 9-channel UNet)."""
    require_diffusion_libraries()
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
    _text_encoder_as_the_hub_saves_it(folder / "text_encoder")
    return folder


XlKind = Literal["base", "inpaint", "refiner"]
XlPreset = Literal["tiny", "sdxl", "sdxl-small"]
SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "use_linear_projection": True,
    "norm_num_groups": 32,
}
"""SDXL 1.0 base's UNet config (2.57 B parameters) but for the text widths and added conditions below."""
_XL_UNETS: dict[str, dict[str, Any]] = {
    "tiny": _UNETS["tiny"],
    # Trained size set to 32 latents, as the sd15 preset does: the parameters are SDXL's, and the VAE's
    # verification pictures (at the UNet's trained size) stay small enough for a random VAE's 1e-4 bound.
    "sdxl": {**SDXL_UNET, "sample_size": 32},
    # SDXL's layout with 2 transformer layers in the last blocks instead of 10: 0.9 B parameters, still
    # over protobuf's 2 GB, for machines that cannot hold the full UNet twice.
    "sdxl-small": {**SDXL_UNET, "sample_size": 32, "transformer_layers_per_block": (1, 2, 2)},
}
_XL_TEXT_WIDTHS = {"tiny": (32, 32), "sdxl": (768, 1280), "sdxl-small": (768, 1280)}
"""The two text encoders' hidden sizes: SDXL's UNet attends to both side by side (2048)."""
_XL_TIME_EMBED = {"tiny": 8, "sdxl": 256, "sdxl-small": 256}
_XL_PROJECTION = {"tiny": 32, "sdxl": 1280, "sdxl-small": 1280}


def _xl_text_encoder(preset: XlPreset, width: int, projection: int | None = None) -> Any:
    """A text encoder of the preset's width: the tiny one, or one layer of SDXL's widths."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    size = (
        {}
        if preset == "tiny"
        else {"hidden_size": width, "intermediate_size": 64, "num_attention_heads": 8, "num_hidden_layers": 2}
    )
    if projection is None:
        return CLIPTextModel(_text_encoder_config("tiny", **size)).eval()
    return CLIPTextModelWithProjection(_text_encoder_config("tiny", projection_dim=projection, **size)).eval()


def write_random_sdxl_checkpoint(folder: Path, kind: XlKind = "base", seed: int = 0, preset: XlPreset = "tiny") -> Path:
    """An SDXL-style `save_pretrained` folder: two text encoders (the refiner: the second only), a UNet
    with the "text_time" added conditions (inpaint: 9 input channels), the pipeline class and config
    flags diffusers writes for that kind. `sdxl`: SDXL's own UNet (2.6 B parameters) with small text
    encoders and VAE of SDXL's widths; `sdxl-small`: the same at 0.9 B."""
    require_diffusion_libraries()
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTokenizer

    refiner = kind == "refiner"
    torch.manual_seed(seed)
    # The tiny VAE for every preset: the large ones measure the UNet (a random 4-block VAE verified at
    # 1024² misses the 1e-4 parity bound through its one-channel group norms: measured 2e-3).
    vae: Any = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **_VAES["tiny"])
    first_width, second_width = _XL_TEXT_WIDTHS[preset]
    time_embed, projection = _XL_TIME_EMBED[preset], _XL_PROJECTION[preset]
    unet: Any = UNet2DConditionModel(
        in_channels=9 if kind == "inpaint" else 4,
        out_channels=4,
        **{**_XL_UNETS[preset], "cross_attention_dim": second_width if refiner else first_width + second_width},
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed,
        projection_class_embeddings_input_dim=time_embed * (5 if refiner else 6) + projection,
    )
    with torch.no_grad():  # as random_components: a trained UNet predicts unit-variance noise
        unet.conv_out.weight.mul_(2.5)
        unet.conv_out.bias.mul_(2.5)
    vocabulary = folder.parent / f".{folder.name}-tokenizer-source"
    write_tokenizer_files(vocabulary)
    # SDXL's second tokenizer pads with "!" where the first pads with <|endoftext|>: keep that difference.
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(vocabulary), model_max_length=TEXT_LENGTH, pad_token="!")
    text_encoder_2 = _xl_text_encoder(preset, second_width, projection)
    common = {"vae": vae.eval(), "unet": unet.eval(), "scheduler": DDIMScheduler(**SD15_SCHEDULER)}
    first = {
        "text_encoder": None if refiner else _xl_text_encoder(preset, first_width),
        "tokenizer": None if refiner else CLIPTokenizer.from_pretrained(str(vocabulary), model_max_length=TEXT_LENGTH),
    }
    pipeline: Any
    if refiner:
        pipeline = StableDiffusionXLImg2ImgPipeline(
            **common, **first, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
            requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        )  # fmt: skip
    else:
        pipeline_class = StableDiffusionXLInpaintPipeline if kind == "inpaint" else StableDiffusionXLPipeline
        pipeline = pipeline_class(**common, **first, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
    pipeline.save_pretrained(str(folder))
    if not refiner:
        _text_encoder_as_the_hub_saves_it(folder / "text_encoder")
    return folder
