"""The Stable-Diffusion pipeline model `NAME` and its restage model `NAME_restage`: configs and version folders.

The version folder holds everything the python backend needs and nothing from prodgen's
install: `model.py` (python_models/stable_diffusion.py), `seeding.py` (prodgen/seeding.py,
the same file the client seeds GAN latents with), `schedulers.py`, `pipeline_requests.py` (the
request checks every pipeline model shares), the checkpoint's tokenizer(s) (SDXL: `tokenizer_2/`
too; the refiner: only that one) and its scheduler config. So the repository runs as is on NVIDIA's Triton with numpy and
transformers in its python environment.

The restage model `NAME_restage` (python_models/restage.py) is a second python model rather than a
mode of `NAME`: its inputs (a photo, an alpha or a cutout model's name, an upscaler) and outputs (the
matte) would make the pipeline's config a union of two contracts. It checks requests with the same
published `pipeline_requests.py` and reads the same limits, since its config carries the pipeline's
facts; the pipeline's `diffusion.restage_model` names it, so clients find it from the pipeline.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

import prodgen.matte_checks
import prodgen.seeding
from prodgen.contract import ImageBounds
from prodgen.errors import ProdgenError
from prodgen.model_facts import DiffusionFacts, ModelFacts, PublishedFacts, to_parameters
from prodgen.model_repository.config import PARAMETER_PREFIX, BatchingOptions, to_pbtxt
from prodgen.zoo.stable_diffusion import INPAINT_IN_CHANNELS, StableDiffusion
from prodgen.zoo.stable_diffusion_graphs import picture_bounds

PYTHON_MODELS = Path(__file__).with_name("python_models")
PIPELINE_SOURCE = PYTHON_MODELS / "stable_diffusion.py"
RESTAGE_SOURCE = PYTHON_MODELS / "restage.py"
FITTING_SOURCE = PYTHON_MODELS / "photo_fitting.py"
SCHEDULERS_SOURCE = PYTHON_MODELS / "schedulers.py"
REQUESTS_SOURCE = PYTHON_MODELS / "pipeline_requests.py"
SEEDING_SOURCE = Path(prodgen.seeding.__file__)
MATTE_CHECKS_SOURCE = Path(prodgen.matte_checks.__file__)
SCHEDULER_CONFIG = "scheduler_config.json"
TOKENIZER_FOLDER = "tokenizer"
SDXL_DEFAULTS = {"default_aesthetic_score": "6.0", "default_negative_aesthetic_score": "2.5"}
"""diffusers' SDXL img2img/inpaint defaults for a refiner's aesthetic scores."""

MAX_STEPS = 150
MAX_PHOTO_SIDE = 4096
"""The largest photo side img2img, inpaint and restage fit to the model (a 4096² photo is 48 MiB as uint8)."""
RESTAGE_SUFFIX = "_restage"
DEFAULTS = {
    "default_steps": "25",
    "default_guidance": "7.5",
    "default_scheduler": "dpmpp-2m",
    "default_strength": "0.8",
}
"""Request defaults, published as parameters so clients and the model read the same values
(diffusers' own defaults: guidance 7.5, img2img strength 0.8); few-step families have their own
(`FAMILY_DEFAULTS`), and an export may set them (`request_defaults`: the settings a checkpoint was
judged with). `served_defaults` layers the three."""


def request_defaults(
    steps: int | None = None, guidance: float | None = None, scheduler: str | None = None
) -> dict[str, str]:
    """The served defaults an export was given (only those), each checked as a request would be."""
    chosen: dict[str, str] = {}
    if steps is not None:
        if not 1 <= steps <= MAX_STEPS:
            raise ProdgenError(f"default steps {steps}: expected 1..{MAX_STEPS}")
        chosen["default_steps"] = str(steps)
    if guidance is not None:
        if not math.isfinite(guidance) or guidance < 0:
            raise ProdgenError(f"default guidance {guidance}: expected a finite number >= 0")
        chosen["default_guidance"] = f"{guidance:g}"
    if scheduler is not None:
        known = scheduler_names()
        if scheduler not in known:
            raise ProdgenError(f"default scheduler '{scheduler}': expected one of {', '.join(known)}")
        chosen["default_scheduler"] = scheduler
    return chosen


def served_defaults(few_step: str | None, given: dict[str, str] | None = None) -> dict[str, str]:
    """`DEFAULTS`, then the few-step distillation's own (`StableDiffusion.few_step`), then what the export
    was given."""
    return {**DEFAULTS, **FAMILY_DEFAULTS.get(few_step or "", {}), **(given or {})}


FAMILY_DEFAULTS = {
    "LCM": {"default_steps": "4", "default_guidance": "8.5", "default_scheduler": "lcm"},
    "TCD": {"default_steps": "4", "default_guidance": "0", "default_scheduler": "tcd"},
    "Turbo-style": {"default_steps": "1", "default_guidance": "0", "default_scheduler": "euler-ancestral"},
}
"""Few-step families sample as their model cards say: LCM as diffusers' LCM pipeline (4 steps, guidance 8.5),
TCD and SD-Turbo-style checkpoints without guidance."""

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
    ("fit", mc.TYPE_BOOL, (1,), True),
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
    ("fitting", _STRING, (1,)),
    ("latents", mc.TYPE_FP32, (-1, -1, -1)),
)
"""`latents`: the denoised latents the picture was decoded from, or, with `denoising_end`, the latents
handed off to a refiner (then `image` is empty, 0×0)."""
_RESTAGE_INPUTS: tuple[tuple[str, int, tuple[int, ...], bool], ...] = (
    ("photo", mc.TYPE_UINT8, (-1, -1, 3), False),
    ("alpha", mc.TYPE_UINT8, (-1, -1, 1), True),
    ("cutout_model", _STRING, (1,), True),
    *(
        entry
        for entry in _INPUTS
        if entry[0] in ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler")
    ),
    ("upscaler", _STRING, (1,), True),
    ("force", mc.TYPE_BOOL, (1,), True),
)
_RESTAGE_OUTPUTS = (
    ("image", mc.TYPE_UINT8, (-1, -1, 3)),
    ("matte", mc.TYPE_UINT8, (-1, -1, 1)),
    ("fitting", _STRING, (1,)),
)


def scheduler_names() -> tuple[str, ...]:
    """The schedulers the published `schedulers.py` offers (its `SCHEDULERS`), for clients to read."""
    spec = importlib.util.spec_from_file_location("prodgen_published_schedulers", SCHEDULERS_SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.SCHEDULERS)


MAX_PUBLISHED_WORDS = 512
"""A tokenizer with at most this many whole words has its words published (`DiffusionFacts.known_words`)."""
_WORD_END = "</w>"


def whole_words(vocabulary: dict[str, int]) -> tuple[str, ...]:
    """The words of a CLIP byte-pair vocabulary that are one token whole (`red</w>`), where there
    are at most `MAX_PUBLISHED_WORDS` of them; () for a full-size tokenizer (SD's has ~30,000)."""
    words = sorted(
        token[: -len(_WORD_END)]
        for token in vocabulary
        if token.endswith(_WORD_END) and len(token) > len(_WORD_END) + 1 and token[: -len(_WORD_END)].isalpha()
    )
    return tuple(words) if len(words) <= MAX_PUBLISHED_WORDS else ()


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
    restage_model: str = ""
    family: str = ""
    guidance_embedding_dim: int = 0
    loras: str = ""
    vocabulary_size: int | None = None
    known_words: tuple[str, ...] = ()
    defaults: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))
    """The served request defaults (`served_defaults`: DEFAULTS, the family's, and the export's)."""
    force_zeros_for_empty_prompt: bool = False
    time_ids_length: int = 0
    preview_decoder: str = ""
    """Set on a preview pipeline (`NAME_preview`): what decodes its pictures, said to every client."""

    @classmethod
    def of(
        cls,
        model: StableDiffusion,
        component_models: dict[str, str],
        restage_model: str = "",
        loras: str = "",
        defaults: dict[str, str] | None = None,
    ) -> PipelineFacts:
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
            restage_model=restage_model,
            family=model.family,
            guidance_embedding_dim=model.guidance_embedding_dim,
            loras=loras,
            vocabulary_size=model.vocabulary_size,
            known_words=whole_words(model.first_tokenizer.get_vocab()),
            defaults=served_defaults(model.few_step, defaults),
            force_zeros_for_empty_prompt=model.force_zeros_for_empty_prompt,
            time_ids_length=model.time_ids_length,
        )

    def parameters(self, task: str = "diffusion") -> dict[str, str]:
        """Typed facts for clients (prodgen.model_facts), then what only the pipeline model reads. The
        component names go to the pipeline (task "diffusion") alone: a restage model calls only its pipeline,
        and switching the pipeline's variants (pipeline_components) rewrites only the pipeline's config, so
        names copied elsewhere would go stale."""
        facts = PublishedFacts(
            task=task,
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
                    max_photo_side=MAX_PHOTO_SIDE,
                    restage_model=self.restage_model,
                    family=self.family,
                    guidance_embedding_dim=self.guidance_embedding_dim,
                    loras=self.loras,
                    vocabulary_size=self.vocabulary_size,
                    known_words=",".join(self.known_words),
                    default_steps=int(self.defaults["default_steps"]),
                    default_guidance=float(self.defaults["default_guidance"]),
                    default_scheduler=self.defaults["default_scheduler"],
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
            **(
                {f"model.{part}": served for part, served in self.component_models.items()}
                if task == "diffusion"
                else {}
            ),
            **self.defaults,
            **(xl if self.time_ids_length else {}),
            **({"preview_decoder": self.preview_decoder} if self.preview_decoder else {}),
        }


def _python_config(
    name: str,
    inputs: tuple[tuple[str, int, tuple[int, ...], bool], ...],
    outputs: tuple[tuple[str, int, tuple[int, ...]], ...],
    parameters: dict[str, str],
    batching: BatchingOptions,
) -> mc.ModelConfig:
    """A python-backend config: one row per picture, up to `batching.max_batch_size` a request,
    and `batching.instance_count` instances: the requests the deployment works on at once.

    Requests are batched where the work is, in the components (the UNet's dynamic batcher puts
    the steps of concurrent pictures into one call), not here: the pipeline has no dynamic
    batcher, so Triton's default scheduler hands each instance one request at a time. With one,
    the batcher handed requests that arrived together to one instance, whose `execute` ran them
    one after the other while the other instances idled (the slowest of 8 pictures at
    concurrency 4 waited 100 s for a 13 s job), and the UNet never saw two pictures at once."""

    config = mc.ModelConfig(name=name, backend="python", max_batch_size=batching.max_batch_size)
    for tensor_name, data_type, dims, optional in inputs:
        config.input.add(name=tensor_name, data_type=data_type, dims=list(dims), optional=optional)
    for tensor_name, data_type, dims in outputs:
        config.output.add(name=tensor_name, data_type=data_type, dims=list(dims))
    # The pipeline only orchestrates: an idle instance costs a stub process and no compute; its
    # components run on the devices their own configs name.
    config.instance_group.add(count=batching.instance_count, kind=mc.ModelInstanceGroup.KIND_CPU)
    for key, value in parameters.items():
        config.parameters[PARAMETER_PREFIX + key].string_value = value
    return config


def pipeline_config(name: str, facts: PipelineFacts, batching: BatchingOptions) -> mc.ModelConfig:
    inputs = _INPUTS + (_XL_INPUTS if facts.time_ids_length else ())
    return _python_config(name, inputs, _OUTPUTS, facts.parameters(), batching)


def pipeline_config_text(name: str, facts: PipelineFacts, batching: BatchingOptions) -> str:
    return to_pbtxt(pipeline_config(name, facts, batching))


def restage_config(name: str, pipeline: str, facts: PipelineFacts, batching: BatchingOptions) -> mc.ModelConfig:
    """The restage model `name` over the pipeline `pipeline`: the pipeline's facts under task "restage", and
    the pipeline as the one model it calls."""
    parameters = {**facts.parameters(task="restage"), "model.pipeline": pipeline}
    return _python_config(name, _RESTAGE_INPUTS, _RESTAGE_OUTPUTS, parameters, batching)


def restage_config_text(name: str, pipeline: str, facts: PipelineFacts, batching: BatchingOptions) -> str:
    return to_pbtxt(restage_config(name, pipeline, facts, batching))


def write_pipeline_version(folder: Path, model: StableDiffusion, facts: PipelineFacts) -> None:
    shutil.copyfile(PIPELINE_SOURCE, folder / "model.py")
    shutil.copyfile(SCHEDULERS_SOURCE, folder / "schedulers.py")
    shutil.copyfile(REQUESTS_SOURCE, folder / "pipeline_requests.py")
    shutil.copyfile(FITTING_SOURCE, folder / "photo_fitting.py")
    shutil.copyfile(SEEDING_SOURCE, folder / "seeding.py")
    for component, _, tokenizer in model.text_encoders:
        tokenizer.save_pretrained(str(folder / component.replace("text_encoder", TOKENIZER_FOLDER)))
    (folder / SCHEDULER_CONFIG).write_text(json.dumps(model.scheduler_config, indent=2) + "\n")


def write_restage_version(folder: Path) -> None:
    shutil.copyfile(RESTAGE_SOURCE, folder / "model.py")
    shutil.copyfile(MATTE_CHECKS_SOURCE, folder / "matte_checks.py")
    shutil.copyfile(SCHEDULERS_SOURCE, folder / "schedulers.py")
    shutil.copyfile(REQUESTS_SOURCE, folder / "pipeline_requests.py")
    shutil.copyfile(FITTING_SOURCE, folder / "photo_fitting.py")
