"""What the zoo declares about each architecture: one `ZooModel` per entry.

Like an exporter config in Hugging Face Optimum, an entry says how to build the
upstream-compatible network, how to wrap it in the served contract, which tensors go in
and out, the image bounds, the checkpoint quirks, and the parity tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

from prodgen.checkpoints import StateDict
from prodgen.contract import ImageBounds, TensorSpec
from prodgen.model_facts import ModelFacts, Task

__all__ = ["Task", "ZooModel"]


def _unchanged(state_dict: StateDict) -> StateDict:
    return state_dict


@dataclass(frozen=True)
class ZooModel:
    name: str
    task: Task
    summary: str
    upstream: str
    build: Callable[[], nn.Module]
    """The network with upstream's module names, so upstream state_dicts load unchanged."""
    serving_graph: Callable[[nn.Module], nn.Module]
    """Wraps the network so its forward takes and returns the served tensors, in order."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    bounds: ImageBounds | None = None
    prepare_state_dict: Callable[[StateDict], StateDict] = _unchanged
    """Fixes upstream checkpoint quirks (legacy keys) before a strict load."""
    wrapper_keys: tuple[str, ...] = ()
    """Keys under which upstream files wrap the state_dict, in order of preference."""
    init_weights: Callable[[nn.Module], None] | None = None
    """Upstream's initialisation, for seeded random weights when no checkpoint is given."""
    weight_files: tuple[str, ...] = ()
    """For networks whose weights upstream ships as several files: the submodule each file
    loads into, in the order the files are given (AdaIN's `vgg`, `decoder`). Empty: one file."""
    finish_loading: Callable[[nn.Module, Mapping[str, object] | None], str | None] | None = None
    """Sets what the network derives from its weights or from the checkpoint beyond the
    state_dict (StyleGAN2's truncation latent); given the checkpoint mapping, or None.
    Returns a line saying what it chose, for the user and the provenance record."""
    min_fraction_within_one_level: float = 0.999
    facts: ModelFacts = field(default_factory=ModelFacts)
    """What clients need beyond the tensors (upscale factor, classes, scalar defaults), published in config.pbtxt."""

    def __post_init__(self) -> None:
        if self.task == "upscale" and self.facts.scale is None:
            raise ValueError(f"zoo model {self.name}: an upscaler must state its scale (facts=ModelFacts(scale=...))")

    @property
    def image_inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(spec for spec in self.inputs if spec.is_image)
