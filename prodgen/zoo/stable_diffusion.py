"""Stable-Diffusion checkpoints: a `save_pretrained` folder (or a single file,
`stable_diffusion_single_file`) in, checked PyTorch components out.

Three families, told apart by the UNet's config and `model_index.json` as diffusers does:
`sd` (1.x/2.x: one CLIP text encoder), `sdxl` (a UNet with `addition_embed_type` "text_time":
CLIPTextModel + CLIPTextModelWithProjection, whose penultimate hidden states are concatenated and
whose pooled projection and size/crop "time ids" are the UNet's added conditions) and
`sdxl-refiner` (`requires_aesthetics_score`: text_encoder_2 only, an aesthetic score in the
time ids).

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prodgen.errors import ProdgenError, first_line

MODEL_INDEX = "model_index.json"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SCHEDULER_CONFIG = "scheduler_config.json"
SDXL_COMPONENTS = ("unet", "vae", "text_encoder_2", "tokenizer_2", "scheduler")
"""An SDXL refiner has only these; an SDXL base also text_encoder and tokenizer."""
SDXL_ADDITION = "text_time"
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
    """transformers.CLIPTextModel (None for an SDXL refiner)"""
    tokenizer: Any
    """transformers.CLIPTokenizer (None for an SDXL refiner)"""
    scheduler_config: dict[str, Any]
    text_encoder_2: Any = None
    """SDXL: transformers.CLIPTextModelWithProjection"""
    tokenizer_2: Any = None
    force_zeros_for_empty_prompt: bool = False
    """SDXL: an empty negative prompt conditions on zeros, not on the encoded empty text."""
    requires_aesthetics_score: bool = False
    """SDXL refiner: the time ids end with an aesthetic score instead of the target size."""

    @property
    def xl(self) -> bool:
        return getattr(self.unet.config, "addition_embed_type", None) == SDXL_ADDITION

    @property
    def text_encoders(self) -> list[tuple[str, Any, Any]]:
        """(component, encoder, tokenizer) in the order their hidden states are concatenated."""
        pairs = [
            ("text_encoder", self.text_encoder, self.tokenizer),
            ("text_encoder_2", self.text_encoder_2, self.tokenizer_2),
        ]
        return [pair for pair in pairs if pair[1] is not None]

    @property
    def pooled_width(self) -> int:
        """SDXL: the width of text_encoder_2's pooled projection (`text_embeds`); 0 otherwise."""
        return int(self.text_encoder_2.config.projection_dim) if self.text_encoder_2 is not None else 0

    @property
    def time_ids_length(self) -> int:
        """SDXL: original size, crop top-left and target size (6), or aesthetic score for the target (5)."""
        if not self.xl:
            return 0
        return 5 if self.requires_aesthetics_score else 6

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
        return int(self.text_encoders[0][2].model_max_length)

    @property
    def text_width(self) -> int:
        """The width of the text states the UNet attends to (SDXL: both encoders' widths added)."""
        return sum(int(encoder.config.hidden_size) for _, encoder, _ in self.text_encoders)

    @property
    def guidance_embedding_dim(self) -> int:
        """The UNet's `time_cond_proj_dim` (LCM-distilled UNets: guidance is an input embedding, not
        classifier-free), 0 for a plain UNet."""
        return int(getattr(self.unet.config, "time_cond_proj_dim", None) or 0)

    @property
    def scheduler_class(self) -> str:
        return str(self.scheduler_config.get("_class_name", ""))

    @property
    def few_step(self) -> str | None:
        """The few-step distillation the checkpoint is, which decides how it samples: LCM (guidance-embedded
        UNet or an LCM scheduler), TCD, Turbo-style (Euler Ancestral with trailing spacing, 1-4 steps
        without guidance); None for a checkpoint sampled the usual way."""
        if self.guidance_embedding_dim or self.scheduler_class == "LCMScheduler":
            return "LCM"
        if self.scheduler_class == "TCDScheduler":
            return "TCD"
        if (
            self.scheduler_class == "EulerAncestralDiscreteScheduler"
            and self.scheduler_config.get("timestep_spacing") == "trailing"
        ):
            return "Turbo-style"
        return None

    @property
    def family(self) -> str:
        """What people call this kind of checkpoint, as clients and `prodgen models` show it: the base
        (SD 1.x / SD 2.x by the text encoder's width, 768: CLIP ViT-L, 1024: OpenCLIP ViT-H; SDXL or
        SDXL refiner by the UNet's added conditions) and its few-step distillation, if any ("SDXL Turbo-style")."""
        if self.xl:
            base = "SDXL refiner" if self.requires_aesthetics_score else "SDXL"
        else:
            base = {768: "SD 1.x", 1024: "SD 2.x"}.get(self.text_width, "SD 1.x/2.x")
        few_step = self.few_step
        if few_step is None:
            return base
        return f"SDXL {few_step}" if self.xl else few_step

    @property
    def first_tokenizer(self) -> Any:
        """The tokenizer whose ids the first text encoder reads (the refiner has only the second)."""
        return self.text_encoders[0][2]

    @property
    def vocabulary_size(self) -> int:
        """Token ids the text encoder's embedding holds (0..vocabulary_size-1)."""
        return int(self.text_encoders[0][1].config.vocab_size)

    @property
    def native_size(self) -> int:
        """The picture side the UNet was trained at (SD 1.5: 512)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor


def require_diffusion_libraries() -> None:
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
            f"{folder}: not a folder; expected a Stable-Diffusion checkpoint saved with diffusers' save_pretrained, "
            "or a single .safetensors/.ckpt file"
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
    expected = SDXL_COMPONENTS if (folder / "text_encoder_2").is_dir() else COMPONENTS
    missing = [name for name in expected if not (folder / name).is_dir()]
    if missing:
        raise ProdgenError(
            f"{folder}: component folder(s) {', '.join(missing)} missing; a Stable-Diffusion checkpoint has "
            f"{', '.join(expected)}"
        )
    return index


def _load(component: str, folder: Path, load: Any) -> Any:
    """One component through its library's from_pretrained, any failure as one line naming it."""
    try:
        return load(str(folder / component))
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        raise ProdgenError(f"{folder / component}: cannot load the {component}: {first_line(error)}") from None


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
    if getattr(model.vae.config, "latents_mean", None) is not None:
        raise ProdgenError(f"{where / 'vae'}: latents_mean/latents_std are set; only a scaling_factor is supported")
    for component, encoder, tokenizer in model.text_encoders:
        positions = int(encoder.config.max_position_embeddings)
        length = int(tokenizer.model_max_length)
        if length != model.text_length or not 1 < length <= positions:
            raise ProdgenError(
                f"{where / component.replace('text_encoder', 'tokenizer')}: model_max_length {length}, expected "
                f"{model.text_length} in 2..{positions} (the text encoder's max_position_embeddings)"
            )
    addition = getattr(unet, "addition_embed_type", None)
    if addition not in (None, SDXL_ADDITION):
        raise ProdgenError(
            f"{where / 'unet'}: addition_embed_type {addition!r}, expected none (SD 1.x/2.x) or {SDXL_ADDITION!r} (SDXL)"
        )
    dim = model.guidance_embedding_dim
    if dim and (dim < 2 or model.inpainting):
        raise ProdgenError(
            f"{where / 'unet'}: time_cond_proj_dim {dim}: a guidance-embedded (LCM-distilled) UNet is supported "
            "for text-to-picture with an embedding of at least 2 values"
        )
    if model.xl:
        _check_added_conditions(model)


def _check_added_conditions(model: StableDiffusion) -> None:
    """The UNet's added-condition embedding must take the pooled text and the time ids the family sends."""
    where = model.folder
    if model.text_encoder_2 is None:
        raise ProdgenError(f"{where}: an SDXL UNet needs text_encoder_2 (CLIPTextModelWithProjection)")
    expected = int(model.unet.add_embedding.linear_1.in_features)
    sent = int(model.unet.config.addition_time_embed_dim) * model.time_ids_length + model.pooled_width
    if sent != expected:
        raise ProdgenError(
            f"{where / 'unet'}: the added-condition embedding takes {expected} values, but text_encoder_2's "
            f"projection ({model.pooled_width}) and {model.time_ids_length} time ids give {sent}; check "
            "requires_aesthetics_score in model_index.json"
        )


UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"


def _one_copy_unet(unet_class: Any, folder: Path, weights: dict[str, Any]) -> Any:
    """The UNet with one copy of its weights in memory: built on the meta device and given the tensors
    safetensors read (`assign`), shard by shard. diffusers' own loading without the accelerate package
    first fills a randomly initialised model and then copies a second, loaded state into it, which for
    SDXL's UNet is 19 GB at the peak instead of 10. Other layouts (.bin files) go through from_pretrained.
    `weights`: from_pretrained's keyword arguments (the `variant`, whose files are `….<variant>.safetensors`)."""
    import torch
    from safetensors.torch import load_file

    variant = weights.get("variant")
    file = UNET_WEIGHTS.replace(".safetensors", f".{variant}.safetensors") if variant else UNET_WEIGHTS
    index = folder / f"{file}.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / file).is_file():
        shards = [file]
    else:
        return unet_class.from_pretrained(str(folder), low_cpu_mem_usage=False, **weights).float()
    with torch.device("meta"):
        unet = unet_class.from_config(unet_class.load_config(str(folder)))
    for shard in shards:
        state = load_file(str(folder / shard))
        for name, tensor in state.items():  # FP32, as from_pretrained gives it, one tensor converted at a time
            state[name] = tensor.float() if tensor.is_floating_point() else tensor
        unet.load_state_dict(state, strict=False, assign=True)
        del state
    missing = [name for name, tensor in [*unet.named_parameters(), *unet.named_buffers()] if tensor.is_meta]
    if missing:
        raise ValueError(f"{len(missing)} tensors missing from the weights, e.g. {missing[0]}")
    return unet


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


def load_stable_diffusion(
    folder: Path, variant: str | None = None, diffusers_config: Path | None = None
) -> StableDiffusion:
    """Load and check a `save_pretrained` folder (SD 1.x/2.x, SDXL base, refiner; inpainting variants included),
    its weights `variant` (e.g. "fp16"; None: the plain weights, or the only variant the folder holds) in FP32;
    or a single-file checkpoint, with the configs of `diffusers_config` (`stable_diffusion_single_file`)."""
    require_diffusion_libraries()
    from prodgen.zoo.stable_diffusion_single_file import is_single_file, single_file_as_folder

    if is_single_file(folder):
        if variant is not None:
            raise ProdgenError(f"{folder}: --variant picks a folder's weights files; a single file has one set")
        with single_file_as_folder(folder, diffusers_config) as converted:
            return replace(load_stable_diffusion(converted), folder=folder)
    if diffusers_config is not None:
        raise ProdgenError(
            f"--diffusers-config {diffusers_config}: only for a single-file checkpoint; {folder} is not one"
        )
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    index = _check_folder(folder)
    xl = (folder / "text_encoder_2").is_dir()
    has_first_encoder = (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir()
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
            unet=_load("unet", folder, lambda path: _one_copy_unet(UNet2DConditionModel, Path(path), weights).eval()),
            vae=_load(
                "vae",
                folder,
                lambda path: AutoencoderKL.from_pretrained(path, low_cpu_mem_usage=False, **weights).float().eval(),
            ),
            text_encoder=(
                _load(
                    "text_encoder",
                    folder,
                    lambda path: CLIPTextModel.from_pretrained(path, dtype=torch.float32, **weights).float().eval(),
                )
                if has_first_encoder
                else None
            ),
            tokenizer=(
                _load("tokenizer", folder, lambda path: CLIPTokenizer.from_pretrained(path, local_files_only=True))
                if has_first_encoder
                else None
            ),
            scheduler_config=scheduler_config,
            text_encoder_2=(
                _load(
                    "text_encoder_2",
                    folder,
                    lambda path: (
                        CLIPTextModelWithProjection.from_pretrained(path, dtype=torch.float32, **weights).float().eval()
                    ),
                )
                if xl
                else None
            ),
            tokenizer_2=(
                _load("tokenizer_2", folder, lambda path: CLIPTokenizer.from_pretrained(path, local_files_only=True))
                if xl
                else None
            ),
            force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", xl)),
            requires_aesthetics_score=bool(index.get("requires_aesthetics_score", False)),
        )
    _check_shapes(model)
    if not math.isfinite(model.scaling_factor) or model.scaling_factor <= 0:
        raise ProdgenError(f"{folder / 'vae'}: scaling_factor {model.scaling_factor}, expected a positive number")
    return model
