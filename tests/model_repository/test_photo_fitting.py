"""The published photo fitting and matte check: PIL as the reference filter, sizes a shop's photos take."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

import prodgen.model_repository
from prodgen.photos import photograph

PYTHON_MODELS = Path(prodgen.model_repository.__file__).with_name("python_models")


def published(name: str) -> ModuleType:
    """A python_models module loaded as the python backend loads it: by file, its neighbours on the path."""
    sys.path.insert(0, str(PYTHON_MODELS))
    try:
        spec = importlib.util.spec_from_file_location(name, PYTHON_MODELS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(PYTHON_MODELS))


fitting = published("photo_fitting")
requests = published("pipeline_requests")


@pytest.mark.parametrize(("height", "width"), [(44, 64), (170, 256), (1200, 1800), (400, 7)])
def test_resize_matches_pils_bilinear_within_one_level(height: int, width: int) -> None:
    photo = photograph("coffee")
    expected = np.asarray(Image.fromarray(photo).resize((width, height), Image.Resampling.BILINEAR))
    ours = fitting.resize(photo, height, width)
    assert ours.shape == expected.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - expected).max() <= 1


def test_fitted_size_keeps_the_aspect_and_the_side_multiple() -> None:
    assert fitting.fitted_size(32, 48, 8, 64, 4) == (32, 48)  # within: unchanged
    assert fitting.fitted_size(341, 512, 4, 64, 4) == (44, 64)  # 512 → 64, 341 × 0.125 = 42.6 → 44
    assert fitting.fitted_size(30, 32, 4, 64, 4) == (32, 32)  # not a multiple: rounded
    assert fitting.fitted_size(3, 5, 8, 64, 4) == (8, 12)  # too small: the shorter side up to 8
    assert fitting.fitted_size(4096, 8, 8, 64, 4) == (64, 8)  # too elongated: the short side clamped
