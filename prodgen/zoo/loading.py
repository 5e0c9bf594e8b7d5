"""Instantiate a zoo network from a checkpoint, or with seeded random weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prodgen.checkpoints import extract_state_dict, load_weights, read_checkpoint
from prodgen.zoo.spec import ZooModel


def instantiate(model: ZooModel, checkpoint: Path | None = None, seed: int = 0) -> nn.Module:
    """The network in eval mode: the checkpoint's weights, or upstream's init seeded by `seed`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = model.build()
        if checkpoint is None and model.init_weights is not None:
            model.init_weights(network)
    if checkpoint is not None:
        state_dict = extract_state_dict(read_checkpoint(checkpoint), model.wrapper_keys)
        load_weights(network, model.prepare_state_dict(state_dict), model.name)
    return network.eval()


def serving_module(model: ZooModel, checkpoint: Path | None = None, seed: int = 0) -> nn.Module:
    """The network wrapped in the served contract, ready to export or to run as the reference."""
    return model.serving_graph(instantiate(model, checkpoint, seed)).eval()
