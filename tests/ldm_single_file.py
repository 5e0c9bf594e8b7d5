"""Write a diffusers SD 1.x folder as the single file A1111 and ComfyUI save: every weight in one state dict
under the original latent-diffusion (LDM) key names, the reverse of the key mapping diffusers'
`from_single_file` applies (UNet `model.diffusion_model.*`, VAE `first_stage_model.*`, CLIP text encoder
`cond_stage_model.transformer.*`). Tests use it to build single-file checkpoints they cannot download."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET_LAYERS = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    layer, _, parameter = rest.rpartition(".")
    return f"{UNET_RESNET.get(layer, layer)}.{parameter}"


def unet_key(key: str, config: dict) -> str:
    """One diffusers UNet2DConditionModel key as the LDM UNet names it (blocks numbered as one sequence)."""
    per_block = int(config["layers_per_block"]) + 1  # each down block's resnets + its downsampler; up: resnets
    layer, _, parameter = key.rpartition(".")
    if layer in UNET_LAYERS:
        return f"{UNET_LAYERS[layer]}.{parameter}"
    if found := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, index, rest = int(found[1]), found[2], int(found[3]), found[4]
        place = 1 + block * per_block + index
        return f"input_blocks.{place}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{place}.1.{rest}"
    if found := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(found[1]) + 1) * per_block}.0.op.{found[2]}"
    if found := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(found[1])}.{_resnet(found[2])}"
    if found := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{found[1]}"
    if found := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, index, rest = int(found[1]), found[2], int(found[3]), found[4]
        place = block * per_block + index
        return f"output_blocks.{place}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{place}.1.{rest}"
    if found := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(found[1])
        has_attention = config["up_block_types"][block].startswith("CrossAttn")
        return f"output_blocks.{block * per_block + per_block - 1}.{2 if has_attention else 1}.conv.{found[2]}"
    raise KeyError(f"no LDM name for UNet key {key}")


def vae_key(key: str, config: dict) -> str:
    """One diffusers AutoencoderKL key as the LDM autoencoder names it (decoder blocks numbered upwards)."""
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    if found := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{found[1]}.block.{found[2]}.{found[3]}"
    if found := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
        return f"encoder.down.{found[1]}.downsample.{found[2]}"
    last = len(config["up_block_types"]) - 1
    if found := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{last - int(found[1])}.block.{found[2]}.{found[3]}"
    if found := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        return f"decoder.up.{last - int(found[1])}.upsample.{found[2]}"
    if found := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{found[1]}.mid.block_{int(found[2]) + 1}.{found[3]}"
    if found := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        return f"{found[1]}.mid.attn_1.{VAE_ATTENTION[found[2]]}.{found[3]}"
    return key


def _state(component: Path) -> dict[str, torch.Tensor]:
    files = sorted(component.glob("*.safetensors"))
    assert len(files) == 1, f"{component}: expected one weights file, found {files}"
    return load_file(str(files[0]))


def write_ldm_single_file(folder: Path, out: Path) -> Path:
    """`folder` (an SD 1.x save_pretrained folder) as one LDM-keyed file: .safetensors, or .ckpt
    (a `torch.save`d {"state_dict": ...}, tensors only, as the original training code wrote them)."""
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state: dict[str, torch.Tensor] = {}
    for key, tensor in _state(folder / "unet").items():
        state[f"model.diffusion_model.{unet_key(key, unet_config)}"] = tensor
    for key, tensor in _state(folder / "vae").items():
        name = vae_key(key, vae_config)
        if ".mid.attn_1." in name and name.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # the LDM autoencoder's attention projections are 1×1 convolutions
        state[f"first_stage_model.{name}"] = tensor
    for key, tensor in _state(folder / "text_encoder").items():  # transformers ≥ 5.6 saves CLIP without text_model.
        state[f"cond_stage_model.transformer.text_model.{key.removeprefix('text_model.')}"] = tensor
    state = {key: tensor.contiguous() for key, tensor in state.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".ckpt":
        torch.save({"state_dict": state}, out)
    else:
        save_file(state, str(out))
    return out
