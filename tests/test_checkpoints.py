"""Safe checkpoint loading: training files with their `args` load; pickled code never runs."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from prodgen.checkpoints import extract_state_dict, read_checkpoint
from prodgen.errors import ProdgenError

MARKER = "pickled-code-ran"


class WritesMarker:
    """Unpickling this calls `open(MARKER, "w")`: a stand-in for any code a file could run."""

    def __init__(self, folder: Path) -> None:
        self.target = str(folder / MARKER)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.target, "w"))


@dataclass
class TrainingNote:
    """A harmless custom class: still not a weight, so still refused."""

    step: int


def adam_state_dict() -> dict[str, object]:
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(4))]
    optimizer = torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99))
    torch.stack([p.sum() for p in params]).sum().backward()
    optimizer.step()
    return optimizer.state_dict()


def test_rosinality_training_file_with_namespace_args_and_optimizers_loads(tmp_path: Path) -> None:
    g_ema = {"style.1.weight": torch.randn(8, 8), "input.input": torch.randn(1, 8, 4, 4)}
    torch.save(
        {
            "g": {key: value + 1 for key, value in g_ema.items()},
            "d": {"final_linear.0.weight": torch.randn(2, 8)},
            "g_ema": g_ema,
            "g_optim": adam_state_dict(),
            "d_optim": adam_state_dict(),
            "args": argparse.Namespace(size=256, batch=16, lr=0.002, r1=10.0, arch="stylegan2", augment=False),
            "ada_aug_p": 0.0,
        },
        tmp_path / "050000.pt",
    )
    loaded = read_checkpoint(tmp_path / "050000.pt")
    assert isinstance(loaded["args"], argparse.Namespace) and loaded["args"].size == 256
    state = extract_state_dict(loaded, ("g_ema",))
    assert state.keys() == g_ema.keys() and all(torch.equal(state[k], g_ema[k]) for k in g_ema)


@pytest.mark.parametrize("payload", ["reduce", "custom-class"])
def test_file_with_any_other_pickled_object_is_refused_in_one_line(tmp_path: Path, payload: str) -> None:
    obj: object = WritesMarker(tmp_path) if payload == "reduce" else TrainingNote(step=3)
    torch.save({"g_ema": {"w": torch.zeros(2)}, "args": argparse.Namespace(size=8), "extra": obj}, tmp_path / "bad.pt")
    with pytest.raises(ProdgenError) as raised:
        read_checkpoint(tmp_path / "bad.pt")
    message = str(raised.value)
    assert "\n" not in message
    assert "pickled code or objects" in message and "prodgen only loads weights" in message
    assert not os.path.exists(tmp_path / MARKER)


def test_namespace_is_not_a_back_door_for_other_objects(tmp_path: Path) -> None:
    torch.save({"args": argparse.Namespace(hook=WritesMarker(tmp_path))}, tmp_path / "args.pt")
    with pytest.raises(ProdgenError, match="pickled code or objects"):
        read_checkpoint(tmp_path / "args.pt")
    assert not os.path.exists(tmp_path / MARKER)
