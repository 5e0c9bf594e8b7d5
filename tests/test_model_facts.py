"""Typed model facts: what a zoo entry states is what a client reads back from config.pbtxt."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prodgen import zoo
from prodgen.contract import ImageBounds, TensorSpec
from prodgen.errors import ProdgenError
from prodgen.model_facts import DiffusionFacts, ModelFacts, PublishedFacts, config_facts, published_facts, to_parameters
from prodgen.model_repository.config import BatchingOptions, onnxruntime_config, parse_pbtxt, to_pbtxt


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_entry_reads_back_from_its_config_as_declared(name: str) -> None:
    model = zoo.get(name)
    config = parse_pbtxt(to_pbtxt(onnxruntime_config(model, "served", BatchingOptions())))
    read = config_facts(config)
    assert read == PublishedFacts(task=model.task, zoo_model=model.name, bounds=model.bounds, facts=model.facts)


def test_parameter_names_follow_the_fields() -> None:
    facts = PublishedFacts(
        task="upscale",
        bounds=ImageBounds(16, 512, 128),
        facts=ModelFacts(scale=4, side_multiple=2, input_defaults={"strength": 0.5}, notes={"source": "a test"}),
    )
    assert to_parameters(facts) == {
        "task": "upscale",
        "min_side": "16",
        "max_side": "512",
        "opt_side": "128",
        "scale": "4",
        "side_multiple": "2",
        "input_defaults.strength": "0.5",
        "notes.source": "a test",
    }


def test_a_nested_group_round_trips_and_is_absent_unless_given() -> None:
    diffusion = ModelFacts(diffusion=DiffusionFacts(prompt_max_tokens=77, latent_channels=4, vae_scale_factor=8))
    parameters = {f"prodgen.{key}": value for key, value in to_parameters(PublishedFacts(facts=diffusion)).items()}
    assert parameters["prodgen.diffusion.prompt_max_tokens"] == "77"
    assert published_facts(parameters).facts == diffusion
    assert published_facts({}).facts.diffusion is None and published_facts({}).bounds is None


def test_unknown_parameters_are_ignored_and_bad_values_named() -> None:
    assert published_facts({"prodgen.intra_op_threads": "2", "other": "x"}) == PublishedFacts()
    with pytest.raises(ProdgenError, match=r"prodgen\.scale is 'four', expected int"):
        published_facts({"prodgen.scale": "four"})
    with pytest.raises(ProdgenError, match="scale is 0, expected at least 1"):
        ModelFacts(scale=0)


def test_an_upscaler_without_a_scale_is_refused_where_it_is_declared() -> None:
    import dataclasses

    with pytest.raises(ValueError, match="must state its scale"):
        dataclasses.replace(zoo.get("srvgg-x2-small"), facts=ModelFacts())


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (TensorSpec("photo", "UINT8", (-1, -1, 3)), "image"),
        (TensorSpec("noise", "FP32", (512,)), "latent"),
        (TensorSpec("category", "INT64", (1,)), "class"),
        (TensorSpec("strength", "FP32", (1,)), "scalar"),
        (TensorSpec("prompt", "BYTES", (1,)), "text"),
        (TensorSpec("mask", "UINT8", (-1, -1, 1)), "other"),
    ],
)
def test_input_kinds_come_from_dtype_and_dims_not_names(spec: TensorSpec, kind: str) -> None:
    assert spec.kind == kind


def test_the_client_and_the_prodgen_cli_import_neither_torch_nor_the_zoo() -> None:
    code = "import sys, prodgen.client, prodgen.cli; print(sorted(m for m in ('torch', 'prodgen.zoo') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
