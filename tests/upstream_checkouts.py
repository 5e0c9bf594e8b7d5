"""Upstream repositories' own code, imported from a local checkout for parity tests (never committed here).

A test names the environment variable that points at the checkout and skips with the reason
when it is unset. Upstream's files import torchvision, which this environment does not
install; the inference paths the tests run use only `transforms.functional.normalize` of it,
given here as torchvision defines it ((x - mean) / std per channel).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch


def upstream_checkout(variable: str, repository: str, required: Sequence[str]) -> Path:
    location = os.environ.get(variable)
    if not location:
        pytest.skip(f"set {variable} to a checkout of {repository} to compare with upstream's own code")
    checkout = Path(location)
    missing = [name for name in required if not (checkout / name).is_file()]
    if missing:
        pytest.skip(f"{variable}={checkout} lacks {', '.join(missing)}: not a checkout of {repository}")
    return checkout


def _normalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    shape = (-1, 1, 1)
    return (tensor - torch.tensor(mean).reshape(shape)) / torch.tensor(std).reshape(shape)


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    modules = {
        name: types.ModuleType(name)
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    }
    modules["torchvision.transforms.functional"].normalize = _normalize  # type: ignore[attr-defined]
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]  # type: ignore[attr-defined]
    for attribute in ("transforms", "utils", "models"):
        setattr(modules["torchvision"], attribute, modules.get(f"torchvision.{attribute}", types.ModuleType(attribute)))
    return modules


@contextmanager
def upstream_imports(folder: Path, *names: str) -> Iterator[list[types.ModuleType]]:
    """Upstream's modules `names` imported from `folder` as its scripts import them; forgotten afterwards."""
    before = set(sys.modules)
    stand_in = {} if importlib.util.find_spec("torchvision") else _torchvision_stand_in()
    sys.modules.update(stand_in)
    sys.path.insert(0, str(folder))
    try:
        yield [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            del sys.modules[name]
