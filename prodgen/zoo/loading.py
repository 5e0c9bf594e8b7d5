"""Instantiate a zoo network from a checkpoint, or with seeded random weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from prodgen.checkpoints import StateDict, extract_state_dict, load_weights, read_checkpoint
from prodgen.errors import ProdgenError
from prodgen.zoo.spec import ZooModel

Checkpoint = Path | Sequence[Path]
"""One weight file, or for models with `weight_files` one file per named part, in order."""


def _files(model: ZooModel, checkpoint: Checkpoint) -> list[Path]:
    files = [checkpoint] if isinstance(checkpoint, Path) else list(checkpoint)
    expected = len(model.weight_files) or 1
    if len(files) != expected:
        wanted = (
            f"{expected} weight files ({', '.join(model.weight_files)}, in that order)"
            if model.weight_files
            else "one weight file"
        )
        raise ProdgenError(f"'{model.name}' takes {wanted}: {len(files)} given")
    return files


def _read(model: ZooModel, files: list[Path]) -> tuple[StateDict, Mapping[str, object]]:
    """The combined state_dict (each part's keys prefixed `part.`) and the first file's mapping."""
    if not model.weight_files:
        loaded = read_checkpoint(files[0])
        return extract_state_dict(loaded, model.wrapper_keys), loaded
    combined: StateDict = {}
    first: Mapping[str, object] = {}
    for part, path in zip(model.weight_files, files, strict=True):
        loaded = read_checkpoint(path)
        first = first or loaded
        combined.update(
            {f"{part}.{key}": value for key, value in extract_state_dict(loaded, model.wrapper_keys).items()}
        )
    return combined, first


def instantiate(
    model: ZooModel, checkpoint: Checkpoint | None = None, seed: int = 0, notes: list[str] | None = None
) -> nn.Module:
    """The network in eval mode: the checkpoint's weights, or upstream's init seeded by `seed`.
    What loading decided beyond the weights (see `ZooModel.finish_loading`) is appended to `notes`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = model.build()
        if checkpoint is None and model.init_weights is not None:
            model.init_weights(network)
    loaded: Mapping[str, object] | None = None
    if checkpoint is not None:
        state_dict, loaded = _read(model, _files(model, checkpoint))
        load_weights(network, model.prepare_state_dict(state_dict), model.name)
    if model.finish_loading is not None:
        note = model.finish_loading(network, loaded)
        if note and notes is not None:
            notes.append(note)
    return network.eval()


def serving_module(
    model: ZooModel, checkpoint: Checkpoint | None = None, seed: int = 0, notes: list[str] | None = None
) -> nn.Module:
    """The network wrapped in the served contract, ready to export or to run as the reference."""
    return model.serving_graph(instantiate(model, checkpoint, seed, notes)).eval()
