"""A served model's declared input ranges reach the client through its config and are checked
before a request leaves: NVIDIA's onnxruntime backend serves the same config without checking."""

from __future__ import annotations

import numpy as np
import pytest

from prodgen import zoo
from prodgen.client.api import ServedModel, infer_requests, served_model
from prodgen.errors import ProdgenError
from prodgen.model_repository.config import BatchingOptions, onnxruntime_config, parse_pbtxt, to_pbtxt


def served(zoo_name: str) -> ServedModel:
    """The model as a client decodes it from the config.pbtxt prodgen-export publishes."""
    config = parse_pbtxt(to_pbtxt(onnxruntime_config(zoo.get(zoo_name), zoo_name, BatchingOptions())))
    return served_model(zoo_name, config)


def test_adain_alpha_outside_0_1_is_refused_before_sending() -> None:
    model = served("adain")
    alpha = model.input("alpha")
    assert alpha is not None and alpha.value_range == (0.0, 1.0)
    photo = np.zeros((1, 64, 64, 3), np.uint8)
    inputs = {"input_image": photo, "style_image": photo}
    assert infer_requests(model, {**inputs, "alpha": np.full((1, 1), 0.5, np.float32)})
    for bad in (-1.0, 5.0):
        with pytest.raises(ProdgenError, match=rf"input 'alpha': {bad:g} is outside the allowed range 0\.\.1"):
            infer_requests(model, {**inputs, "alpha": np.full((1, 1), bad, np.float32)})


def test_a_class_id_beyond_the_published_classes_is_refused_before_sending() -> None:
    model = served("conditional-dcgan")
    class_id = model.input("class_id")
    assert class_id is not None and class_id.value_range is not None and model.facts.num_classes is not None
    low, high = class_id.value_range
    assert (low, high) == (0, model.facts.num_classes - 1)
    z = np.zeros((1, 100), np.float32)
    with pytest.raises(ProdgenError, match=rf"input 'class_id': {high + 1:g} is outside the allowed range"):
        infer_requests(model, {"z": z, "class_id": np.full((1, 1), high + 1, np.int64)})
