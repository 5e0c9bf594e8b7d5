"""Stable-Diffusion checkpoints: a `save_pretrained` folder in, checked PyTorch components out.

The architectures are diffusers' and transformers' own (`UNet2DConditionModel`,
`AutoencoderKL`, `CLIPTextModel`, `CLIPTokenizer`): they are the reference every SD
checkpoint is trained and fine-tuned with, so nothing here re-implements them. Both libraries
are the optional `diffusion` extra and are imported only when a checkpoint is loaded.

Weights load from safetensors, or from `.bin` files through `torch.load(weights_only=True)`,
which is what diffusers 0.42 and transformers 5 do; nothing here unpickles. Folders as the hub ships
them load too: one holding only a weights variant (`*.fp16.safetensors`) is read with that variant,
found automatically or named, and upcast to FP32 for export. Loading never touches the network
(local files only).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodgen.errors import ProdgenError

MODEL_INDEX = "model_index.json"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SCHEDULER_CONFIG = "scheduler_config.json"
INPAINT_IN_CHANNELS = 9
"""An inpainting UNet sees the noisy latents (4), the mask (1) and the masked picture's latents (4)."""
INSTALL_HINT = "latent diffusion needs the 'diffusion' extra: pip install 'prodgen[diffusion]'"
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder")
PLAIN_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)
VARIANT_WEIGHTS = re.compile(r"^(?:diffusion_pytorch_model|model|pytorch_model)\.([\w-]+)\.(?:safetensors|bin)$")
"""`<weights>.<variant>.safetensors`, how save_pretrained(variant=...) names a variant's files (fp16, ema, ...)."""


@dataclass(frozen=True)
class StableDiffusion:
    """The PyTorch components of one checkpoint, in eval mode, and what the pipeline needs to know."""

    # diffusers builds its classes' attributes (config, submodules) at run time, which type
    # checkers cannot follow: the components are typed loosely on purpose.
    folder: Path
    unet: Any
    """diffusers.UNet2DConditionModel"""
    vae: Any
    """diffusers.AutoencoderKL"""
    text_encoder: Any
    """transformers.CLIPTextModel"""
    tokenizer: Any
    """transformers.CLIPTokenizer"""
    scheduler_config: dict[str, Any]

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def unet_in_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def inpainting(self) -> bool:
        return self.unet_in_channels == INPAINT_IN_CHANNELS

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel: the VAE halves the side once per block but the last."""
        return int(2 ** (len(self.vae.config.block_out_channels) - 1))

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_multiple(self) -> int:
        """Latent sides must divide by this: the UNet halves them once per down block but the last."""
        return int(2 ** (len(self.unet.config.down_block_types) - 1))

    @property
    def size_multiple(self) -> int:
        """Picture sides must divide by this (SD 1.5: 64)."""
        return self.vae_scale_factor * self.latent_multiple

    @property
    def text_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    @property
    def text_width(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    @property
    def guidance_embedding_dim(self) -> int:
        """The UNet's `time_cond_proj_dim` (LCM-distilled UNets: guidance is an input embedding, not
        classifier-free), 0 for a plain UNet."""
        return int(getattr(self.unet.config, "time_cond_proj_dim", None) or 0)

    @property
    def scheduler_class(self) -> str:
        return str(self.scheduler_config.get("_class_name", ""))

    @property
    def family(self) -> str:
        """What people call this kind of checkpoint: LCM (guidance-embedded UNet or an LCM scheduler),
        Turbo-style (Euler Ancestral with trailing spacing, sampled in 1-4 steps without guidance), or
        SD 1.x / SD 2.x by the text encoder's width (768: CLIP ViT-L, 1024: OpenCLIP ViT-H)."""
        if self.guidance_embedding_dim or self.scheduler_class == "LCMScheduler":
            return "LCM"
        if self.scheduler_class == "TCDScheduler":
            return "TCD"
        if (
            self.scheduler_class == "EulerAncestralDiscreteScheduler"
            and self.scheduler_config.get("timestep_spacing") == "trailing"
        ):
            return "Turbo-style"
        return {768: "SD 1.x", 1024: "SD 2.x"}.get(self.text_width, "SD 1.x/2.x")

    @property
    def vocabulary_size(self) -> int:
        """Token ids the text encoder's embedding holds (0..vocabulary_size-1)."""
        return int(self.text_encoder.config.vocab_size)

    @property
    def native_size(self) -> int:
        """The picture side the UNet was trained at (SD 1.5: 512)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor


def _require_libraries() -> None:
    """diffusers and transformers, or one line saying what to install; their own progress bars
    ('Loading weights: 100%|…') and warnings stay out of prodgen's output, which reports the steps."""
    try:
        import diffusers
        import transformers
    except ImportError as error:
        raise ProdgenError(f"{INSTALL_HINT} ({error})") from None
    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()


def _check_folder(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise ProdgenError(
            f"{folder}: not a folder; expected a Stable-Diffusion checkpoint saved with diffusers' save_pretrained"
        )
    index_path = folder / MODEL_INDEX
    if not index_path.is_file():
        raise ProdgenError(
            f"{folder}: no {MODEL_INDEX}; expected a Stable-Diffusion checkpoint saved with diffusers' save_pretrained "
            f"(folders {', '.join(COMPONENTS)})"
        )
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProdgenError(f"{index_path}: not valid JSON ({error})") from None
    if not isinstance(index, dict):
        raise ProdgenError(f"{index_path}: expected a JSON object naming the pipeline's components")
    missing = [name for name in COMPONENTS if not (folder / name).is_dir()]
    if missing:
        raise ProdgenError(
            f"{folder}: component folder(s) {', '.join(missing)} missing; a Stable-Diffusion checkpoint has "
            f"{', '.join(COMPONENTS)}"
        )
    return index


def _load(component: str, folder: Path, load: Any) -> Any:
    """One component through its library's from_pretrained, any failure as one line naming it."""
    try:
        return load(str(folder / component))
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ProdgenError(f"{folder / component}: cannot load the {component}: {first_line}") from None


def _check_shapes(model: StableDiffusion) -> None:
    """The components must fit together; a mismatch would otherwise surface as a shape error mid-export."""
    unet = model.unet.config
    where = model.folder
    if model.unet_in_channels not in (model.latent_channels, INPAINT_IN_CHANNELS):
        raise ProdgenError(
            f"{where / 'unet'}: in_channels {unet.in_channels}, expected {model.latent_channels} (the VAE's latent "
            f"channels) or {INPAINT_IN_CHANNELS} (inpainting)"
        )
    if model.inpainting and model.latent_channels != 4:
        raise ProdgenError(f"{where / 'vae'}: latent_channels {model.latent_channels}, an inpainting UNet expects 4")
    if int(unet.out_channels) != model.latent_channels:
        raise ProdgenError(
            f"{where / 'unet'}: out_channels {unet.out_channels}, expected the VAE's latent channels "
            f"{model.latent_channels}"
        )
    if int(unet.cross_attention_dim) != model.text_width:
        raise ProdgenError(
            f"{where / 'unet'}: cross_attention_dim {unet.cross_attention_dim}, expected the text encoder's "
            f"hidden size {model.text_width}"
        )
    positions = int(model.text_encoder.config.max_position_embeddings)
    if not 1 < model.text_length <= positions:
        raise ProdgenError(
            f"{where / 'tokenizer'}: model_max_length {model.text_length}, expected 2..{positions} "
            f"(the text encoder's max_position_embeddings)"
        )
    if getattr(unet, "addition_embed_type", None):
        raise ProdgenError(
            f"{where / 'unet'}: extra conditioning inputs (addition_embed_type={unet.addition_embed_type!r}) are not "
            "Stable Diffusion 1.x/2.x; SDXL UNets are not supported"
        )
    dim = model.guidance_embedding_dim
    if dim and (dim < 2 or model.inpainting):
        raise ProdgenError(
            f"{where / 'unet'}: time_cond_proj_dim {dim}: a guidance-embedded (LCM-distilled) UNet is supported "
            "for text-to-picture with an embedding of at least 2 values"
        )


def shipped_variant(folder: Path) -> str | None:
    """The weights variant a folder holds when it holds no plain weights (the hub's fp16-only folders);
    None when every component has plain weights."""
    variants: set[str] = set()
    for component in WEIGHT_COMPONENTS:
        files = [item.name for item in (folder / component).glob("*") if item.is_file()]
        if any(name in PLAIN_WEIGHTS for name in files):
            continue
        variants |= {found.group(1) for name in files if (found := VARIANT_WEIGHTS.match(name))}
    if len(variants) > 1:
        raise ProdgenError(
            f"{folder}: weights only as variants {', '.join(sorted(variants))}; choose one with --variant"
        )
    return next(iter(variants), None)


def load_stable_diffusion(folder: Path, variant: str | None = None) -> StableDiffusion:
    """Load and check a `save_pretrained` folder (SD 1.x/2.x, inpainting variant included), its weights
    `variant` (e.g. "fp16"; None: the plain weights, or the only variant the folder holds) in FP32."""
    _require_libraries()
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    _check_folder(folder)
    chosen = variant or shipped_variant(folder)
    # local files only: an export never reaches for the hub, whatever the environment says
    weights: dict[str, Any] = {"local_files_only": True, **({"variant": chosen} if chosen else {})}
    scheduler_path = folder / "scheduler" / SCHEDULER_CONFIG
    try:
        scheduler_config = json.loads(scheduler_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ProdgenError(f"{scheduler_path}: cannot read the scheduler config ({error})") from None
    # low_cpu_mem_usage=False: the accelerate package is not a dependency; saying so avoids its warning.
    with torch.no_grad():
        model = StableDiffusion(
            folder=folder,
            unet=_load(
                "unet",
                folder,
                lambda path: (
                    UNet2DConditionModel.from_pretrained(path, low_cpu_mem_usage=False, **weights).float().eval()
                ),
            ),
            vae=_load(
                "vae",
                folder,
                lambda path: AutoencoderKL.from_pretrained(path, low_cpu_mem_usage=False, **weights).float().eval(),
            ),
            text_encoder=_load(
                "text_encoder",
                folder,
                lambda path: CLIPTextModel.from_pretrained(path, dtype=torch.float32, **weights).float().eval(),
            ),
            tokenizer=_load(
                "tokenizer", folder, lambda path: CLIPTokenizer.from_pretrained(path, local_files_only=True)
            ),
            scheduler_config=scheduler_config,
        )
    _check_shapes(model)
    if not math.isfinite(model.scaling_factor) or model.scaling_factor <= 0:
        raise ProdgenError(f"{folder / 'vae'}: scaling_factor {model.scaling_factor}, expected a positive number")
    return model
