"""Typed facts about a model that clients need beyond its tensors, and their config.pbtxt form.

A zoo entry states them once (`ZooModel.facts`); export publishes them as `prodgen.*`
string parameters of the model's config.pbtxt; a client decodes the parameters back into
the same types once, when it first reads the config. This module imports neither torch
nor the zoo, so a client that only talks gRPC stays light.

The parameter names follow the field names: a plain field `scale` is `prodgen.scale`, a
mapping field `input_defaults` is `prodgen.input_defaults.<key>`, a nested group
`diffusion` is `prodgen.diffusion.<field>`, and a group marked flat (the image bounds,
the model facts inside `PublishedFacts`) puts its fields at the top level. A new fact is
one typed field here; encoding and decoding follow from the type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from prodgen.contract import ImageBounds
from prodgen.errors import ProdgenError

PARAMETER_PREFIX = "prodgen."
"""The prefix of prodgen's own entries among a config's `parameters`."""

Task = Literal["generate", "stylize", "upscale", "cutout", "diffusion"]
TASKS: tuple[str, ...] = get_args(Task)

FLAT = {"flat": True}
"""Field metadata: encode this group's fields without the group's name in front."""


@dataclass(frozen=True)
class DiffusionFacts:
    """What a latent-diffusion pipeline's client needs to prepare requests."""

    prompt_max_tokens: int
    """Tokens the text encoder reads; longer prompts are truncated."""
    latent_channels: int
    vae_scale_factor: int
    """Image side over latent side (8 for Stable Diffusion's VAE)."""
    inpainting: bool = False
    """A 9-channel inpainting UNet: every request needs an image and a mask."""
    max_steps: int = 1000
    """The most denoising steps a request may ask for."""
    schedulers: str = ""
    """The scheduler names a request may choose, comma-separated."""
    max_photo_side: int = 4096
    """The largest side of an image the pipeline fits to its bounds (img2img, inpaint, restage)."""
    restage_model: str = ""
    """The served restage pipeline built on this one (photo in, product kept), if any."""
    family: str = ""
    """What kind of checkpoint it is: SD 1.x, SD 2.x, SDXL, SDXL refiner, and few-step distillations (LCM, TCD,
    Turbo-style; "SDXL Turbo-style" …). An SDXL base can hand latents off at `denoising_end`, a refiner
    takes them at `denoising_start`."""
    guidance_embedding_dim: int = 0
    """Above 0: an LCM-distilled UNet takes the guidance as an embedding of this size (`timestep_cond`),
    so guidance costs no second UNet half (it is not classifier-free)."""
    loras: str = ""
    """LoRAs fused into the weights at export, `file@scale` comma-separated."""
    vocabulary_size: int | None = None
    """Token ids the text encoder knows (0..vocabulary_size-1)."""
    known_words: str = ""
    """The whole words the tokenizer holds, comma-separated, where it holds few (a toy or domain
    model): a prompt's other words are spelled out in pieces the model was not trained on."""
    default_steps: int | None = None
    default_guidance: float | None = None
    default_scheduler: str | None = None
    """The served request defaults, for people reading `prodgen models` (the pipeline model reads
    its own copies, `prodgen.default_*`, both written from one `PipelineFacts.defaults`)."""

    def __post_init__(self) -> None:
        _at_least_one(self, "prompt_max_tokens", "latent_channels", "vae_scale_factor")


@dataclass(frozen=True)
class ModelFacts:
    """Facts a zoo entry declares about its served model, beyond tensors, task and bounds."""

    scale: int | None = None
    """Output side over input side, for upscalers."""
    side_multiple: int = 1
    """Image sides that are a multiple of this give the best results (tiles are cut to it)."""
    num_classes: int | None = None
    """For class-conditional generators: class ids run 0..num_classes-1."""
    input_defaults: Mapping[str, float] = field(default_factory=dict)
    """The value a client sends for a scalar input (truncation ψ, style strength α) it was not given."""
    diffusion: DiffusionFacts | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    """Provenance for people reading the config (e.g. which batch-norm statistics); no code reads them."""

    def __post_init__(self) -> None:
        _at_least_one(self, "scale", "side_multiple", "num_classes")

    def input_default(self, name: str) -> float:
        return self.input_defaults.get(name, 1.0)


@dataclass(frozen=True)
class PublishedFacts:
    """Everything prodgen publishes about a model in its config, as a client reads it back."""

    task: str | None = None
    zoo_model: str | None = None
    bounds: ImageBounds | None = field(default=None, metadata=FLAT)
    facts: ModelFacts = field(default_factory=ModelFacts, metadata=FLAT)


def _at_least_one(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if value is not None and value < 1:
            raise ProdgenError(f"{type(owner).__name__}.{name} is {value}, expected at least 1")


def to_parameters(facts: object) -> dict[str, str]:
    """`facts` (a dataclass of the kinds above) as string parameters, without the prefix."""
    assert dataclasses.is_dataclass(facts) and not isinstance(facts, type)
    parameters: dict[str, str] = {}
    for item in dataclasses.fields(facts):
        value = getattr(facts, item.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            prefix = "" if item.metadata.get("flat") else f"{item.name}."
            parameters.update({prefix + key: text for key, text in to_parameters(value).items()})
        elif isinstance(value, Mapping):
            parameters.update({f"{item.name}.{key}": str(entry) for key, entry in value.items()})
        else:
            parameters[item.name] = str(value)
    return parameters


T = TypeVar("T")


def _optional_inner(kind: Any) -> Any:
    """`X` for `X | None`, else `kind` itself."""
    if get_origin(kind) in (typing.Union, types.UnionType):
        return next(arg for arg in get_args(kind) if arg is not type(None))
    return kind


def _decode_scalar(kind: Any, text: str, key: str) -> object:
    try:
        if kind is bool:
            return text.lower() in ("1", "true", "yes")
        return kind(text) if kind in (int, float, str) else text
    except ValueError:
        raise ProdgenError(f"config parameter {PARAMETER_PREFIX}{key} is '{text}', expected {kind.__name__}") from None


def from_parameters(kind: type[T], parameters: Mapping[str, str], prefix: str = "") -> T:
    """The `kind` dataclass decoded from string parameters (without `PARAMETER_PREFIX`);
    absent fields take their defaults, unknown keys are ignored."""
    hints = get_type_hints(kind)
    values: dict[str, object] = {}
    for item in dataclasses.fields(kind):  # type: ignore[arg-type]
        hint = _optional_inner(hints[item.name])
        if dataclasses.is_dataclass(hint):
            nested = prefix if item.metadata.get("flat") else f"{prefix}{item.name}."
            nested_keys = {f"{nested}{inner.name}" for inner in dataclasses.fields(hint)}
            if nested_keys & parameters.keys() or hint is hints[item.name]:  # an optional group only when given
                values[item.name] = from_parameters(hint, parameters, nested)  # type: ignore[arg-type]
        elif get_origin(hint) in (Mapping, dict):
            value_kind = get_args(hint)[1]
            start = f"{prefix}{item.name}."
            values[item.name] = {
                key[len(start) :]: _decode_scalar(value_kind, text, key)
                for key, text in parameters.items()
                if key.startswith(start)
            }
        elif prefix + item.name in parameters:
            values[item.name] = _decode_scalar(hint, parameters[prefix + item.name], prefix + item.name)
    try:
        return kind(**values)
    except TypeError as error:
        raise ProdgenError(f"config parameters do not describe a {kind.__name__}: {error}") from None


def published_facts(config_parameters: Mapping[str, str]) -> PublishedFacts:
    """Decode a config's parameters (all of them, prefixed or not) into `PublishedFacts`."""
    ours = {
        key[len(PARAMETER_PREFIX) :]: value
        for key, value in config_parameters.items()
        if key.startswith(PARAMETER_PREFIX)
    }
    return from_parameters(PublishedFacts, ours)


def config_facts(config: Any) -> PublishedFacts:
    """`PublishedFacts` of a Triton `ModelConfig` (its `parameters`, each a string value)."""
    return published_facts({key: value.string_value for key, value in config.parameters.items()})
