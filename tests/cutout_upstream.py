"""The cutout family's upstream, for tests: U²-Net's key layout written out from upstream's
constructors, and upstream's own code imported from a local checkout (never committed here).

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


Shapes = dict[str, tuple[int, ...]]

# (stage, RSU height or "4F", in, mid, out), as upstream's U2NET / U2NETP constructors list them
Stage = tuple[str, int | str, int, int, int]
"""(stage, RSU height or \"4F\", in, mid, out)."""

U2NET_STAGES: list[Stage] = [
    ("stage1", 7, 3, 32, 64), ("stage2", 6, 64, 32, 128), ("stage3", 5, 128, 64, 256), ("stage4", 4, 256, 128, 512),
    ("stage5", "4F", 512, 256, 512), ("stage6", "4F", 512, 256, 512), ("stage5d", "4F", 1024, 256, 512),
    ("stage4d", 4, 1024, 128, 256), ("stage3d", 5, 512, 64, 128), ("stage2d", 6, 256, 32, 64),
    ("stage1d", 7, 128, 16, 64),
]  # fmt: skip
U2NET_SIDES = (64, 64, 128, 256, 512, 512)
U2NETP_STAGES: list[Stage] = [
    ("stage1", 7, 3, 16, 64), ("stage2", 6, 64, 16, 64), ("stage3", 5, 64, 16, 64), ("stage4", 4, 64, 16, 64),
    ("stage5", "4F", 64, 16, 64), ("stage6", "4F", 64, 16, 64), ("stage5d", "4F", 128, 16, 64),
    ("stage4d", 4, 128, 16, 64), ("stage3d", 5, 128, 16, 64), ("stage2d", 6, 128, 16, 64),
    ("stage1d", 7, 128, 16, 64),
]  # fmt: skip
U2NETP_SIDES = (64,) * 6


def rebnconv_shapes(prefix: str, cin: int, cout: int) -> Shapes:
    shapes: Shapes = {f"{prefix}.conv_s1.weight": (cout, cin, 3, 3), f"{prefix}.conv_s1.bias": (cout,)}
    for buffer in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.bn_s1.{buffer}"] = (cout,)
    shapes[f"{prefix}.bn_s1.num_batches_tracked"] = ()
    return shapes


def rsu_shapes(prefix: str, height: int | str, cin: int, mid: int, cout: int) -> Shapes:
    """RSU-L: rebnconvin, rebnconv1..L, rebnconv(L-1)d..1d; RSU-4F has the keys of RSU-4."""
    levels = 4 if height == "4F" else int(height)
    shapes = rebnconv_shapes(f"{prefix}.rebnconvin", cin, cout)
    shapes |= rebnconv_shapes(f"{prefix}.rebnconv1", cout, mid)
    for level in range(2, levels + 1):
        shapes |= rebnconv_shapes(f"{prefix}.rebnconv{level}", mid, mid)
    for level in range(levels - 1, 1, -1):
        shapes |= rebnconv_shapes(f"{prefix}.rebnconv{level}d", 2 * mid, mid)
    shapes |= rebnconv_shapes(f"{prefix}.rebnconv1d", 2 * mid, cout)
    return shapes


def u2net_upstream_shapes(stages: list[Stage], sides: tuple[int, ...]) -> Shapes:
    shapes: Shapes = {}
    for stage in stages:
        shapes |= rsu_shapes(*stage)
    for index, channels in enumerate(sides, start=1):
        shapes[f"side{index}.weight"] = (1, channels, 3, 3)
        shapes[f"side{index}.bias"] = (1,)
    shapes["outconv.weight"] = (1, 6, 1, 1)
    shapes["outconv.bias"] = (1,)
    return shapes


def random_state_dict(shapes: Shapes, seed: int) -> dict[str, torch.Tensor]:
    """Upstream-shaped weights: small random convolutions, batch-norm statistics near identity."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var") or key.endswith("bn_s1.weight"):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif len(shape) == 4:
            state[key] = torch.randn(shape, generator=generator) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return state
