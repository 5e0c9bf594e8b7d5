"""Switching a published pipeline to its TensorRT (or FP16) components: configs only, checked against Triton's proto.

Building the plans needs TensorRT and a GPU (docker/build_plan.sh, or prodgen-export --fp16 where
TensorRT imports); here the `_trt` models are configs as the export writes them, without a plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from prodgen.errors import ProdgenError
from prodgen.model_repository.config import BatchingOptions, parse_pbtxt
from prodgen.model_repository.pipeline_components import PARTS, switch_components
from tests_support import write_sd_pipeline_config

NAME = "shop"


def _pipeline(repository: Path) -> None:
    write_sd_pipeline_config(repository, NAME, BatchingOptions(4))


def _plan_model(repository: Path, served: str) -> None:
    config = mc.ModelConfig(name=served, platform="tensorrt_plan", max_batch_size=8)
    (repository / served).mkdir(parents=True)
    (repository / served / "config.pbtxt").write_text(str(config))


def _components(repository: Path) -> dict[str, str]:
    config = parse_pbtxt((repository / NAME / "config.pbtxt").read_text())
    return {part: config.parameters[f"prodgen.model.{part}"].string_value for part in PARTS}


def test_switching_points_the_pipeline_at_every_plan_there_is_and_back(tmp_path: Path) -> None:
    _pipeline(tmp_path)
    for part in ("unet", "vae_decoder", "vae_encoder"):  # the parts --fp16 covers
        _plan_model(tmp_path, f"{NAME}_{part}_trt")
    chosen = switch_components(tmp_path, NAME, "trt")
    expected = {
        "text_encoder": "shop_text_encoder",
        "unet": "shop_unet_trt",
        "vae_decoder": "shop_vae_decoder_trt",
        "vae_encoder": "shop_vae_encoder_trt",
    }
    assert chosen == expected and _components(tmp_path) == expected  # the config Triton parses names them
    switch_components(tmp_path, NAME, "onnx")
    assert _components(tmp_path) == {part: f"{NAME}_{part}" for part in PARTS}


def test_switching_to_a_variant_the_repository_lacks_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    _pipeline(tmp_path)
    before = (tmp_path / NAME / "config.pbtxt").read_text()
    with pytest.raises(ProdgenError, match="no component of 'shop' has a 'trt' variant"):
        switch_components(tmp_path, NAME, "trt")
    assert (tmp_path / NAME / "config.pbtxt").read_text() == before
    command = [sys.executable, "-m", "prodgen.model_repository.pipeline_components", str(tmp_path), "nothing"]
    result = subprocess.run([*command, "--variant", "trt"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stderr.startswith("Error: ") and "nothing" in result.stderr


def test_the_gpu_check_publishes_a_renamed_copy_on_the_plans_beside_the_fp32_pipeline(tmp_path: Path) -> None:
    from prodgen.bench.diffusion_gpu_check import publish_trt_pipeline

    _pipeline(tmp_path)
    (tmp_path / NAME / "1").mkdir()
    (tmp_path / NAME / "1" / "model.py").write_text("# the pipeline's files travel with the copy\n")
    _plan_model(tmp_path, f"{NAME}_unet_trt")
    copy = publish_trt_pipeline(tmp_path, NAME)
    config = parse_pbtxt((tmp_path / copy / "config.pbtxt").read_text())
    assert config.name == copy == f"{NAME}_on_trt" and (tmp_path / copy / "1" / "model.py").is_file()
    assert config.parameters["prodgen.model.unet"].string_value == f"{NAME}_unet_trt"
    assert config.parameters["prodgen.model.vae_decoder"].string_value == f"{NAME}_vae_decoder"
    assert _components(tmp_path)["unet"] == f"{NAME}_unet"  # the FP32 pipeline is untouched
