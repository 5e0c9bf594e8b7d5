"""Loading Stable-Diffusion save_pretrained folders: what loads, and one clear line for what does not."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from prodgen.errors import ProdgenError
from prodgen.zoo.stable_diffusion import load_stable_diffusion
from tests_support import console_script


@pytest.fixture
def checkpoint(diffusion_checkpoints: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(diffusion_checkpoints["sd"], tmp_path / "sd"))


def test_loads_text_to_image_and_inpainting_checkpoints(diffusion_checkpoints: dict[str, Path]) -> None:
    plain = load_stable_diffusion(diffusion_checkpoints["sd"])
    inpainting = load_stable_diffusion(diffusion_checkpoints["sd_inpaint"])
    assert (plain.unet_in_channels, plain.inpainting) == (4, False)
    assert (inpainting.unet_in_channels, inpainting.inpainting) == (9, True)
    assert plain.text_length == 77 and plain.vae_scale_factor == 2 and plain.size_multiple == 4
    assert plain.scheduler_config["beta_schedule"] == "scaled_linear"


def test_a_file_or_an_unrelated_folder_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "model.onnx"
    file.write_bytes(b"")
    with pytest.raises(ProdgenError, match="not a folder"):
        load_stable_diffusion(file)
    with pytest.raises(ProdgenError, match="cannot read the weights"):
        load_stable_diffusion(file.rename(tmp_path / "model.safetensors"))
    with pytest.raises(ProdgenError, match="no model_index.json"):
        load_stable_diffusion(tmp_path)


def test_a_missing_component_is_named(checkpoint: Path) -> None:
    shutil.rmtree(checkpoint / "tokenizer")
    with pytest.raises(ProdgenError, match="component folder\\(s\\) tokenizer missing"):
        load_stable_diffusion(checkpoint)


def test_a_unet_that_does_not_fit_the_text_encoder_is_named(checkpoint: Path) -> None:
    from prodgen.zoo.stable_diffusion_random import random_components

    shutil.rmtree(checkpoint / "unet")
    random_components(cross_attention_dim=16)["unet"].save_pretrained(str(checkpoint / "unet"))
    with pytest.raises(ProdgenError, match="cross_attention_dim 16, expected the text encoder's hidden size 32"):
        load_stable_diffusion(checkpoint)


def test_weights_of_the_wrong_shape_are_one_line(checkpoint: Path) -> None:
    config_path = checkpoint / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["block_out_channels"] = [32, 32]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ProdgenError, match="cannot load the vae") as caught:
        load_stable_diffusion(checkpoint)
    assert "\n" not in str(caught.value)


def test_export_cli_says_what_a_checkpoint_folder_is(tmp_path: Path) -> None:
    done = subprocess.run(
        [console_script("prodgen-export"), "stable-diffusion", "--checkpoint", str(tmp_path), "--name", "shop"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no model_index.json" in done.stderr and "Traceback" not in done.stderr
