"""The zoo's registry: a model name maps to its `ZooModel` entry.

Adding an architecture is one module that calls `register(...)` and one import line in
`prodgen/zoo/__init__.py`.
"""

from __future__ import annotations

from prodgen.errors import ProdgenError
from prodgen.suggest import did_you_mean
from prodgen.zoo.spec import ZooModel

_ZOO: dict[str, ZooModel] = {}


def register(model: ZooModel) -> ZooModel:
    if model.name in _ZOO:
        raise ValueError(f"zoo model '{model.name}' is registered twice")
    _ZOO[model.name] = model
    return model


def names() -> list[str]:
    return sorted(_ZOO)


def get(name: str) -> ZooModel:
    try:
        return _ZOO[name]
    except KeyError:
        raise ProdgenError(
            f"unknown model '{name}'{did_you_mean(name, names())} (the zoo has: {', '.join(names())})"
        ) from None
