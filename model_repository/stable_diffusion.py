"""The Stable-Diffusion pipeline model `NAME`: its config.pbtxt and the files of its version folder.

The version folder holds everything the python backend needs and nothing from prodgen's
install: `model.py` (python_models/stable_diffusion.py), `seeding.py` (prodgen/seeding.py,
the same file the client seeds GAN latents with), `schedulers.py`, `pipeline_requests.py` (the
request checks every pipeline model shares), the checkpoint's tokenizer(s) (SDXL: `tokenizer_2/`
too; the refiner: only that one) and its scheduler config. So the repository runs as is on NVIDIA's Triton with numpy and
transformers in its python environment.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

import prodgen.seeding
from prodgen.contract import ImageBounds
from prodgen.model_facts import DiffusionFacts, ModelFacts, PublishedFacts, to_parameters
from prodgen.model_repository.config import PARAMETER_PREFIX, BatchingOptions, to_pbtxt
from prodgen.zoo.stable_diffusion import INPAINT_IN_CHANNELS, StableDiffusion
from prodgen.zoo.stable_diffusion_graphs import picture_bounds

PYTHON_MODELS = Path(__file__).with_name("python_models")
PIPELINE_SOURCE = PYTHON_MODELS / "stable_diffusion.py"
SCHEDULERS_SOURCE = PYTHON_MODELS / "schedulers.py"
REQUESTS_SOURCE = PYTHON_MODELS / "pipeline_requests.py"
SEEDING_SOURCE = Path(prodgen.seeding.__file__)
SCHEDULER_CONFIG = "scheduler_config.json"
TOKENIZER_FOLDER = "tokenizer"
SDXL_DEFAULTS = {"default_aesthetic_score": "6.0", "default_negative_aesthetic_score": "2.5"}
"""diffusers' SDXL img2img/inpaint defaults for a refiner's aesthetic scores."""

MAX_STEPS = 150
DEFAULTS = {
    "default_steps": "25",
    "default_guidance": "7.5",
    "default_scheduler": "dpmpp-2m",
    "default_strength": "0.8",
}
"""Request defaults, published as parameters so clients and the model read the same values
(diffusers' own defaults: guidance 7.5, img2img strength 0.8)."""

_STRING = mc.TYPE_STRING
_INPUTS: tuple[tuple[str, int, tuple[int, ...], bool], ...] = (
    ("prompt", _STRING, (1,), False),
    ("negative_prompt", _STRING, (1,), True),
    ("seed", mc.TYPE_INT64, (1,), True),
    ("steps", mc.TYPE_INT64, (1,), True),
    ("guidance", mc.TYPE_FP32, (1,), True),
    ("scheduler", _STRING, (1,), True),
    ("height", mc.TYPE_INT64, (1,), True),
    ("width", mc.TYPE_INT64, (1,), True),
    ("image", mc.TYPE_UINT8, (-1, -1, 3), True),
    ("strength", mc.TYPE_FP32, (1,), True),
    ("mask", mc.TYPE_UINT8, (-1, -1, 1), True),
    ("denoising_end", mc.TYPE_FP32, (1,), True),
    ("denoising_start", mc.TYPE_FP32, (1,), True),
    ("latents", mc.TYPE_FP32, (-1, -1, -1), True),
)
_XL_INPUTS: tuple[tuple[str, int, tuple[int, ...], bool], ...] = (
    ("original_height", mc.TYPE_INT64, (1,), True),
    ("original_width", mc.TYPE_INT64, (1,), True),
    ("crop_top", mc.TYPE_INT64, (1,), True),
    ("crop_left", mc.TYPE_INT64, (1,), True),
    ("aesthetic_score", mc.TYPE_FP32, (1,), True),
    ("negative_aesthetic_score", mc.TYPE_FP32, (1,), True),
)
"""SDXL's size and crop conditioning (diffusers' original_size, crops_coords_top_left) and the refiner's scores."""
_OUTPUTS = (
    ("image", mc.TYPE_UINT8, (-1, -1, 3)),
    ("truncated_tokens", mc.TYPE_INT64, (1,)),
    ("latents", mc.TYPE_FP32, (-1, -1, -1)),
)
"""`latents`: the denoised latents the picture was decoded from, or, with `denoising_end`, the latents
handed off to a refiner (then `image` is empty, 0×0)."""


def scheduler_names() -> tuple[str, ...]:
    """The schedulers the published `schedulers.py` offers (its `SCHEDULERS`), for clients to read."""
    spec = importlib.util.spec_from_file_location("prodgen_published_schedulers", SCHEDULERS_SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.SCHEDULERS)


@dataclass(frozen=True)
class PipelineFacts:
    """What the pipeline model must know about its checkpoint and its component models."""

    component_models: dict[str, str]
    text_length: int
    latent_channels: int
    unet_in_channels: int
    vae_scale_factor: int
    size_multiple: int
    min_side: int
    max_side: int
    opt_side: int
    family: str = "sd"
    force_zeros_for_empty_prompt: bool = False
    time_ids_length: int = 0

    @classmethod
    def of(cls, model: StableDiffusion, component_models: dict[str, str]) -> PipelineFacts:
        bounds = picture_bounds(model)
        return cls(
            component_models=component_models,
            text_length=model.text_length,
            latent_channels=model.latent_channels,
            unet_in_channels=model.unet_in_channels,
            vae_scale_factor=model.vae_scale_factor,
            size_multiple=model.size_multiple,
            min_side=bounds.min_side,
            max_side=bounds.max_side,
            opt_side=bounds.opt_side,
            family=model.family,
            force_zeros_for_empty_prompt=model.force_zeros_for_empty_prompt,
            time_ids_length=model.time_ids_length,
        )

    def parameters(self) -> dict[str, str]:
        """Typed facts for clients (prodgen.model_facts), then what only the pipeline model reads."""
        facts = PublishedFacts(
            task="diffusion",
            bounds=ImageBounds(self.min_side, self.max_side, self.opt_side),
            facts=ModelFacts(
                side_multiple=self.size_multiple,
                diffusion=DiffusionFacts(
                    prompt_max_tokens=self.text_length,
                    latent_channels=self.latent_channels,
                    vae_scale_factor=self.vae_scale_factor,
                    inpainting=self.unet_in_channels == INPAINT_IN_CHANNELS,
                    max_steps=MAX_STEPS,
                    schedulers=",".join(scheduler_names()),
                    family=self.family,
                ),
            ),
        )
        xl = {
            "xl.force_zeros_for_empty_prompt": str(self.force_zeros_for_empty_prompt),
            "xl.time_ids_length": str(self.time_ids_length),
            **SDXL_DEFAULTS,
        }
        return {
            **to_parameters(facts),
            **{f"model.{part}": served for part, served in self.component_models.items()},
            **DEFAULTS,
            **(xl if self.time_ids_length else {}),
        }


def pipeline_config(name: str, facts: PipelineFacts, batching: BatchingOptions) -> mc.ModelConfig:
    """A python-backend config: one row per picture, up to `batching.max_batch_size` a request."""
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=batching.max_batch_size)
    for tensor_name, data_type, dims, optional in _INPUTS + (_XL_INPUTS if facts.time_ids_length else ()):
        config.input.add(name=tensor_name, data_type=data_type, dims=list(dims), optional=optional)
    for tensor_name, data_type, dims in _OUTPUTS:
        config.output.add(name=tensor_name, data_type=data_type, dims=list(dims))
    config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
    # The pipeline only orchestrates: its components run on the devices their own configs name.
    config.instance_group.add(count=batching.instance_count, kind=mc.ModelInstanceGroup.KIND_CPU)
    for key, value in facts.parameters().items():
        config.parameters[PARAMETER_PREFIX + key].string_value = value
    return config


def pipeline_config_text(name: str, facts: PipelineFacts, batching: BatchingOptions) -> str:
    return to_pbtxt(pipeline_config(name, facts, batching))


def write_pipeline_version(folder: Path, model: StableDiffusion, facts: PipelineFacts) -> None:
    shutil.copyfile(PIPELINE_SOURCE, folder / "model.py")
    shutil.copyfile(SCHEDULERS_SOURCE, folder / "schedulers.py")
    shutil.copyfile(REQUESTS_SOURCE, folder / "pipeline_requests.py")
    shutil.copyfile(SEEDING_SOURCE, folder / "seeding.py")
    for component, _, tokenizer in model.text_encoders:
        tokenizer.save_pretrained(str(folder / component.replace("text_encoder", TOKENIZER_FOLDER)))
    (folder / SCHEDULER_CONFIG).write_text(json.dumps(model.scheduler_config, indent=2) + "\n")
