"""The pipeline model's config.pbtxt: a python-backend ModelConfig Triton parses, naming its components."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from prodgen.model_facts import published_facts
from prodgen.model_repository.config import BatchingOptions, parse_pbtxt
from prodgen.model_repository.stable_diffusion import (
    PipelineFacts,
    pipeline_config_text,
    restage_config_text,
    scheduler_names,
)

FACTS = PipelineFacts(
    component_models={part: f"shop_{part}" for part in ("text_encoder", "unet", "vae_decoder", "vae_encoder")},
    text_length=77,
    latent_channels=4,
    unet_in_channels=9,
    vae_scale_factor=8,
    size_multiple=64,
    min_side=64,
    max_side=1024,
    opt_side=512,
    restage_model="shop_restage",
)


def test_pipeline_config_is_a_python_model_with_optional_request_settings() -> None:
    config = parse_pbtxt(pipeline_config_text("shop", FACTS, BatchingOptions(max_batch_size=4)))
    assert config.backend == "python" and config.max_batch_size == 4
    inputs = {tensor.name: tensor for tensor in config.input}
    assert inputs["prompt"].data_type == mc.TYPE_STRING and not inputs["prompt"].optional
    assert all(inputs[name].optional for name in inputs if name != "prompt")
    assert list(inputs["image"].dims) == [-1, -1, 3] and list(inputs["mask"].dims) == [-1, -1, 1]
    assert inputs["fit"].data_type == mc.TYPE_BOOL
    assert [tensor.name for tensor in config.output] == ["image", "truncated_tokens", "fitting", "latents"]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters["prodgen.model.unet"] == "shop_unet"
    assert parameters["prodgen.task"] == "diffusion" and parameters["prodgen.side_multiple"] == "64"
    published = published_facts(parameters)
    assert published.bounds is not None and published.bounds.max_side == 1024
    diffusion = published.facts.diffusion
    assert diffusion is not None and diffusion.inpainting and diffusion.prompt_max_tokens == 77
    assert diffusion.schedulers.split(",") == list(scheduler_names())
    assert diffusion.restage_model == "shop_restage" and diffusion.max_photo_side == 4096
    assert {"ddim", "euler", "dpmpp-2m"} <= set(scheduler_names())


def test_restage_config_names_its_pipeline_and_carries_its_limits() -> None:
    config = parse_pbtxt(restage_config_text("shop_restage", "shop", FACTS, BatchingOptions(max_batch_size=2)))
    assert config.backend == "python" and config.max_batch_size == 2
    inputs = {tensor.name: tensor for tensor in config.input}
    assert not inputs["photo"].optional and not inputs["prompt"].optional
    assert {"alpha", "cutout_model", "upscaler", "force", "seed", "steps"} <= inputs.keys()
    assert "image" not in inputs and "mask" not in inputs
    assert [tensor.name for tensor in config.output] == ["image", "matte", "fitting"]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    # the pipeline is the one model it calls: its components' names would go stale when the pipeline is switched
    assert [key for key in parameters if key.startswith("prodgen.model.")] == ["prodgen.model.pipeline"]
    assert parameters["prodgen.model.pipeline"] == "shop"
    published = published_facts(parameters)
    assert published.task == "restage" and published.bounds is not None and published.bounds.max_side == 1024
