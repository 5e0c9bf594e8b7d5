"""A tiny autoencoder's decoder (TAESD) as a preview decoder for a Stable-Diffusion pipeline.

madebyollin/taesd (SD 1.x/2.x) and madebyollin/taesdxl (SDXL) ship as diffusers folders of
`AutoencoderTiny`; diffusers' pipelines take one in place of the VAE and decode the UNet's
latents with it as they come (its `scaling_factor` is 1: TAESD was trained on SD's scaled latents).
Its decoder is ~1 M parameters against the VAE decoder's ~50 M, so a 512² picture decodes in a
fraction of the time, at visibly lower fidelity (softer detail, small colour shifts): for
previews and thumbnails, never for the catalogue picture. The component reuses the VAE decoder's
graph, so its post-processing (x/2 + 0.5, clamp, ×255 rounded, NHWC uint8) is diffusers' own.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from prodgen.errors import ProdgenError
from prodgen.zoo.stable_diffusion import StableDiffusion, require_diffusion_libraries
from prodgen.zoo.stable_diffusion_graphs import VAE_DECODER, Component, VaeDecoderGraph

PREVIEW_SUFFIX = "vae_decoder_taesd"
PREVIEW_NOTE = "TAESD (tiny autoencoder): fast, lower fidelity than the VAE; for previews"


def load_preview_decoder(folder: Path, model: StableDiffusion) -> Any:
    """The `AutoencoderTiny` saved in `folder`, checked against the pipeline it will decode for."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ProdgenError(f"--preview-decoder {folder}: expected a diffusers AutoencoderTiny folder with config.json")
    config = json.loads(config_path.read_text())
    if config.get("_class_name") != "AutoencoderTiny":
        raise ProdgenError(
            f"--preview-decoder {folder}: its config names {config.get('_class_name')!r}, expected 'AutoencoderTiny' "
            "(madebyollin/taesd, or taesdxl for SDXL)"
        )
    require_diffusion_libraries()
    from diffusers import AutoencoderTiny

    decoder = AutoencoderTiny.from_pretrained(folder, local_files_only=True).eval()
    scale = decoder.config.upsampling_scaling_factor ** (len(decoder.config.decoder_block_out_channels) - 1)
    if decoder.config.latent_channels != model.latent_channels or scale != model.vae_scale_factor:
        raise ProdgenError(
            f"--preview-decoder {folder}: it decodes {decoder.config.latent_channels}-channel latents ×{scale}, the "
            f"checkpoint's VAE {model.latent_channels}-channel ×{model.vae_scale_factor} (taesd is for SD 1.x/2.x, "
            "taesdxl for SDXL)"
        )
    return decoder


def preview_component(vae: Component, decoder: Any) -> Component:
    """The preview decoder as a component with the VAE decoder `vae`'s tensors and verification latents."""
    if vae.suffix != VAE_DECODER:
        raise ValueError(f"expected the {VAE_DECODER} component, got {vae.suffix}")
    graph = VaeDecoderGraph(decoder, float(decoder.config.scaling_factor)).eval()
    spec = replace(vae.spec, name="stable-diffusion-vae-decoder-taesd", build=lambda: graph)
    return Component(PREVIEW_SUFFIX, spec, graph, vae.cases)
