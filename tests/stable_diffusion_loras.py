"""LoRA files as people publish them, with seeded random weights of the right keys, for a given base.

kohya-ss / A1111 layout: `lora_unet_<module path with _>.lora_down.weight`, `.lora_up.weight`, `.alpha`, and
`lora_te_text_model_<…>` for CLIP; diffusers / PEFT layout: `unet.<module path>.lora_A.weight`, `.lora_B.weight`,
and `text_encoder.text_model.<…>`. Both adapt the attention projections, as trainers do by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def adapted_layers(network: Any, targets: tuple[str, ...]) -> list[tuple[str, torch.nn.Linear]]:
    return [
        (name, module)
        for name, module in network.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name.endswith("." + target) for target in targets)
    ]


def _text_path(name: str) -> str:
    """CLIP's module path as published LoRAs name it (transformers 4's `text_model.` prefix)."""
    return name if name.startswith("text_model.") else f"text_model.{name}"


def write_kohya_lora(path: Path, unet: Any, text_encoder: Any, seed: int = 0, rank: int = 4) -> Path:
    generator = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    for prefix, network, targets, rename in (
        ("lora_unet_", unet, UNET_TARGETS, lambda name: name),
        ("lora_te_", text_encoder, TEXT_TARGETS, _text_path),
    ):
        for name, layer in adapted_layers(network, targets):
            key = prefix + rename(name).replace(".", "_")
            weights[f"{key}.lora_down.weight"] = torch.randn(rank, layer.in_features, generator=generator) * 0.2
            weights[f"{key}.lora_up.weight"] = torch.randn(layer.out_features, rank, generator=generator) * 0.2
            weights[f"{key}.alpha"] = torch.tensor(rank / 2.0)
    save_file(weights, str(path))
    return path


def write_peft_lora(path: Path, unet: Any, text_encoder: Any, seed: int = 1, rank: int = 2) -> Path:
    generator = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    for prefix, network, targets, rename in (
        ("unet.", unet, UNET_TARGETS, lambda name: name),
        ("text_encoder.", text_encoder, TEXT_TARGETS, _text_path),
    ):
        for name, layer in adapted_layers(network, targets):
            key = prefix + rename(name)
            weights[f"{key}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=generator) * 0.2
            weights[f"{key}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=generator) * 0.2
    save_file(weights, str(path))
    return path


def with_extra_layer(source: Path, target: Path, module_key: str, rank: int, features: int) -> Path:
    """`source` plus one adapted layer `module_key` (e.g. a layer the base does not have)."""
    from safetensors.torch import load_file

    weights = load_file(str(source))
    down, up = (
        (".lora_down.weight", ".lora_up.weight")
        if module_key.startswith("lora_")
        else (
            ".lora_A.weight",
            ".lora_B.weight",
        )
    )
    weights[module_key + down] = torch.zeros(rank, features)
    weights[module_key + up] = torch.zeros(features, rank)
    save_file(weights, str(target))
    return target
