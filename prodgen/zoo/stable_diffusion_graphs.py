"""The served components of a Stable-Diffusion checkpoint: graphs, tensors, verification inputs.

Each component is a Triton model of its own (`NAME_text_encoder`, `NAME_unet`,
`NAME_vae_decoder`, `NAME_vae_encoder`; SDXL adds `NAME_text_encoder_2` and its refiner has
no `NAME_text_encoder`) described by a `ZooModel`, so export, verification,
the FP16 gate, config.pbtxt and TensorRT profiles treat it like any zoo network. The VAE
graphs carry the scaling factor and the uint8 conversion, so the pipeline model only moves
latents between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prodgen.contract import ImageBounds, TensorSpec, image_spec
from prodgen.photos import photo_batch
from prodgen.seeding import latents_from_seed
from prodgen.zoo.spec import ZooModel
from prodgen.zoo.stable_diffusion import StableDiffusion

TEXT_ENCODER = "text_encoder"
TEXT_ENCODER_2 = "text_encoder_2"
UNET = "unet"
VAE_DECODER = "vae_decoder"
VAE_ENCODER = "vae_encoder"
COMPONENT_NAMES = (TEXT_ENCODER, TEXT_ENCODER_2, UNET, VAE_DECODER, VAE_ENCODER)

FLOAT_TOLERANCE = 1e-4
"""Export verification of float outputs: max |ONNX − PyTorch| relative to max(1, max |PyTorch|)."""

VERIFICATION_PROMPTS = ("a studio photo of a red sneaker on a white table", "")


class TextEncoderGraph(nn.Module):
    """Token ids (B, L) int64 → CLIP's last hidden states (B, L, W), what SD 1.x/2.x condition on."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, return_dict=False)[0]


class XlTextEncoderGraph(nn.Module):
    """SDXL: token ids → the penultimate hidden states (B, L, W), as diffusers' `encode_prompt`
    takes them (`hidden_states[-2]`), and for CLIPTextModelWithProjection also its pooled
    projection `text_embeds` (B, P), the UNet's added text condition."""

    def __init__(self, encoder: Any, pooled: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooled = pooled

    def forward(self, input_ids: torch.Tensor) -> Any:
        output = self.encoder(input_ids=input_ids, output_hidden_states=True)
        states = output.hidden_states[-2]
        return (states, output.text_embeds) if self.pooled else states


class UNetGraph(nn.Module):
    """(latents, timestep (B, 1), text states[, timestep_cond]) → predicted noise; the timestep travels per
    picture because Triton batches every input along axis 0. An LCM-distilled UNet (time_cond_proj_dim set)
    also takes the guidance embedding `timestep_cond` (B, time_cond_proj_dim) the pipeline computes."""

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text_states: torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.unet(
            latents,
            timestep.reshape(-1),
            encoder_hidden_states=text_states,
            timestep_cond=timestep_cond,
            return_dict=False,
        )[0]


class XlUNetGraph(nn.Module):
    """SDXL's UNet: UNetGraph's inputs and the added conditions, the pooled text `text_embeds` (B, P)
    and `time_ids` (B, 6: original size, crop top-left, target size; refiner B, 5: … aesthetic score);
    an LCM-distilled SDXL UNet also the guidance embedding `timestep_cond`."""

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text_states: torch.Tensor,
        text_embeds: torch.Tensor,
        time_ids: torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        added = {"text_embeds": text_embeds, "time_ids": time_ids}
        return self.unet(
            latents,
            timestep.reshape(-1),
            encoder_hidden_states=text_states,
            timestep_cond=timestep_cond,
            added_cond_kwargs=added,
            return_dict=False,
        )[0]


class VaeDecoderGraph(nn.Module):
    """Scaled latents → uint8 NHWC picture, as diffusers' pipelines post-process it
    (÷ scaling factor, decode, x/2 + 0.5 clamped to [0, 1], ×255 rounded)."""

    def __init__(self, vae: Any, scaling_factor: float) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = scaling_factor

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        decoded = self.vae.decode(latents / self.scaling_factor, return_dict=False)[0]
        picture = (decoded / 2 + 0.5).clamp(0, 1)
        return torch.round(picture * 255).to(torch.uint8).permute(0, 2, 3, 1)


class VaeEncoderGraph(nn.Module):
    """uint8 NHWC picture → scaled latents: the mean of the VAE's latent distribution.

    The mean, not a sample: the pipeline's only randomness is its seeded noise, and for SD's
    VAE the posterior's spread is far below what the scheduler's noise adds."""

    def __init__(self, vae: Any, scaling_factor: float) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = scaling_factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pixels = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0 * 2.0 - 1.0
        return self.vae.encode(pixels).latent_dist.mean * self.scaling_factor


def guidance_embedding(w: np.ndarray, dim: int) -> np.ndarray:
    """diffusers' own `get_guidance_scale_embedding(w, dim)` (the LCM pipelines'), as verification input."""
    from diffusers import LatentConsistencyModelPipeline

    embed = LatentConsistencyModelPipeline.get_guidance_scale_embedding
    return embed(None, torch.from_numpy(w), embedding_dim=dim).numpy()  # its `self` is unused


def latent_bounds(model: StableDiffusion) -> ImageBounds:
    """Latent sides the UNet and VAE decoder accept: from one UNet stride up to twice the trained size."""
    step = model.latent_multiple
    native = int(model.unet.config.sample_size)
    return ImageBounds(min_side=step, max_side=max(2 * native, 8 * step), opt_side=max(native, step))


def picture_bounds(model: StableDiffusion) -> ImageBounds:
    latent = latent_bounds(model)
    factor = model.vae_scale_factor
    return ImageBounds(latent.min_side * factor, latent.max_side * factor, latent.opt_side * factor)


@dataclass(frozen=True)
class Component:
    """One served component: its spec, its PyTorch serving graph and the inputs it is verified on."""

    suffix: str
    spec: ZooModel
    graph: nn.Module
    cases: list[dict[str, np.ndarray]]
    external_data: bool = False
    """Save the ONNX weights beside the graph (real SD UNets exceed protobuf's 2 GB)."""


def _spec(
    model: StableDiffusion,
    suffix: str,
    graph: nn.Module,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    bounds: ImageBounds | None,
) -> ZooModel:
    return ZooModel(
        name=f"stable-diffusion-{suffix.replace('_', '-')}",
        task="diffusion",
        summary=f"Stable Diffusion {suffix}",
        upstream=str(model.folder),
        build=lambda: graph,
        serving_graph=lambda network: network,
        inputs=inputs,
        outputs=outputs,
        bounds=bounds,
    )


def prompt_ids(
    model: StableDiffusion, prompts: tuple[str, ...] = VERIFICATION_PROMPTS, tokenizer: Any = None
) -> np.ndarray:
    tokens = (tokenizer or model.text_encoders[0][2])(
        list(prompts), padding="max_length", max_length=model.text_length, truncation=True, return_tensors="np"
    )
    return np.asarray(tokens.input_ids, dtype=np.int64)


def _latents(seed: int, batch: int, channels: int, side_h: int, side_w: int) -> np.ndarray:
    flat = latents_from_seed(seed, batch, channels * side_h * side_w)
    return flat.reshape(batch, channels, side_h, side_w)


def _text_components(model: StableDiffusion) -> tuple[list[Component], np.ndarray, np.ndarray | None]:
    """The text encoder(s), and the verification prompts' text states (and SDXL's pooled text) they give."""
    length = model.text_length
    result = []
    states: list[np.ndarray] = []
    pooled = None
    for suffix, encoder, tokenizer in model.text_encoders:
        ids = prompt_ids(model, tokenizer=tokenizer)
        width = int(encoder.config.hidden_size)
        outputs: tuple[TensorSpec, ...] = (TensorSpec("text_states", "FP32", (length, width)),)
        graph: nn.Module = TextEncoderGraph(encoder).eval()
        if model.xl:
            with_pooled = suffix == TEXT_ENCODER_2
            graph = XlTextEncoderGraph(encoder, with_pooled).eval()
            if with_pooled:
                outputs += (TensorSpec("text_embeds", "FP32", (model.pooled_width,)),)
        with torch.no_grad():
            produced = graph(torch.from_numpy(ids))
        if isinstance(produced, tuple):
            produced, pooled_tensor = produced
            pooled = pooled_tensor.numpy()
        states.append(produced.numpy())
        # the ids the text encoder's embedding holds: the server refuses others (INVALID_ARGUMENT)
        ids_spec = TensorSpec("input_ids", "INT64", (length,), value_range=(0, int(encoder.config.vocab_size) - 1))
        spec = _spec(model, suffix, graph, (ids_spec,), outputs, None)
        result.append(Component(suffix, spec, graph, [{"input_ids": ids}, {"input_ids": ids[:1]}]))
    return result, np.concatenate(states, axis=-1), pooled


def _case_sizes(side: int, step: int) -> list[tuple[int, int]]:
    """Latent (height, width) to verify on: square at `side`, and a smaller non-square one."""
    return [(side, side), (max(step, side // 2), side + step)]


def time_ids_for(model: StableDiffusion, height: int, width: int, rows: int) -> np.ndarray:
    """SDXL's default time ids for a height × width picture, as diffusers' pipelines build them (original
    size = target size, crop (0, 0); the refiner: aesthetic score 6)."""
    tail = (6.0,) if model.requires_aesthetics_score else (height, width)
    return np.tile(np.array([height, width, 0, 0, *tail], dtype=np.float32), (rows, 1))


def components(model: StableDiffusion) -> list[Component]:
    """The components with their verification inputs: real prompts, real photos, seeded latents,
    at the tuned size and at a smaller non-square one."""
    latent = latent_bounds(model)
    pictures = picture_bounds(model)
    length, width, channels = model.text_length, model.text_width, model.latent_channels
    step = model.latent_multiple
    sizes = _case_sizes(latent.opt_side, step)
    # The UNet is verified at most 8 strides wide (SD 1.5: its 64 latents): an SDXL UNet at its 128
    # would cost minutes and gigabytes of attention per case on a CPU, and shows nothing smaller sides miss.
    unet_sizes = _case_sizes(min(latent.opt_side, 8 * step), step)
    text_components, states, pooled = _text_components(model)
    unet: nn.Module = XlUNetGraph(model.unet).eval() if model.xl else UNetGraph(model.unet).eval()
    decoder = VaeDecoderGraph(model.vae, model.scaling_factor).eval()
    encoder = VaeEncoderGraph(model.vae, model.scaling_factor).eval()
    factor = model.vae_scale_factor
    unet_inputs: tuple[TensorSpec, ...] = (
        TensorSpec("latents", "FP32", (model.unet_in_channels, -1, -1)),
        TensorSpec("timestep", "FP32", (1,)),
        TensorSpec("text_states", "FP32", (length, width)),
    )
    if model.xl:
        unet_inputs += (
            TensorSpec("text_embeds", "FP32", (model.pooled_width,)),
            TensorSpec("time_ids", "FP32", (model.time_ids_length,)),
        )
    unet_cases = []
    for i, (h, w) in enumerate(unet_sizes):
        case = {
            "latents": _latents(10 + i, 2, model.unet_in_channels, h, w),
            "timestep": np.array([[999.0], [321.5]], dtype=np.float32),
            "text_states": states,
        }
        if pooled is not None:
            case["text_embeds"] = pooled
            case["time_ids"] = time_ids_for(model, h * factor, w * factor, 2)
        unet_cases.append(case)
    embedding = model.guidance_embedding_dim
    if embedding:
        unet_inputs += (TensorSpec("timestep_cond", "FP32", (embedding,)),)
        for case in unet_cases:  # guidance 8.5 and 2 (w = guidance − 1), as diffusers' LCM pipeline embeds it
            case["timestep_cond"] = guidance_embedding(np.array([7.5, 1.0], dtype=np.float32), embedding)
    decoder_cases = [{"latents": _latents(20 + i, 2, channels, h, w)} for i, (h, w) in enumerate(sizes)]
    encoder_cases = [{"image": photo_batch(2, h * factor, w * factor, offset=i)} for i, (h, w) in enumerate(sizes)]
    return [
        *text_components,
        Component(
            UNET,
            _spec(model, UNET, unet, unet_inputs, (TensorSpec("noise", "FP32", (channels, -1, -1)),), latent),
            unet,
            unet_cases,
            external_data=True,
        ),
        Component(
            VAE_DECODER,
            _spec(
                model,
                VAE_DECODER,
                decoder,
                (TensorSpec("latents", "FP32", (channels, -1, -1)),),
                (image_spec("image"),),
                latent,
            ),
            decoder,
            decoder_cases,
        ),
        Component(
            VAE_ENCODER,
            _spec(
                model,
                VAE_ENCODER,
                encoder,
                (image_spec("image"),),
                (TensorSpec("latents", "FP32", (channels, -1, -1)),),
                pictures,
            ),
            encoder,
            encoder_cases,
        ),
    ]
