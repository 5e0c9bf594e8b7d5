"""Single-file checkpoints (the LDM-keyed `.safetensors`/`.ckpt` A1111 and ComfyUI save) load through
diffusers' own single-file loading, offline, with the weights of the folder they were written from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from ldm_single_file import write_ldm_single_file

from prodgen.errors import ProdgenError
from prodgen.zoo.stable_diffusion import load_stable_diffusion
from tests_support import console_script


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_a_single_file_loads_the_weights_of_its_folder(
    diffusion_checkpoints: dict[str, Path], tmp_path: Path, suffix: str
) -> None:
    folder = diffusion_checkpoints["sd"]
    single = write_ldm_single_file(folder, tmp_path / f"model{suffix}")
    from_folder = load_stable_diffusion(folder)
    from_file = load_stable_diffusion(single, diffusers_config=folder)
    assert from_file.folder == single and from_file.family == from_folder.family
    for part in ("unet", "vae", "text_encoder"):
        theirs, ours = getattr(from_folder, part).state_dict(), getattr(from_file, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        assert all(torch.equal(ours[name], theirs[name]) for name in theirs), part


def test_prodgen_export_serves_a_single_file(diffusion_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    folder = diffusion_checkpoints["sd"]
    single = write_ldm_single_file(folder, tmp_path / "shop-look.safetensors")
    repository = tmp_path / "models"
    export = [console_script("prodgen-export"), "stable-diffusion", "--checkpoint", str(single)]
    done = subprocess.run(
        [*export, "--diffusers-config", str(folder), "--repository", str(repository), "--name", "look"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    provenance = json.loads((repository / "look_unet" / "1" / "prodgen-export.json").read_text())
    assert provenance["stable_diffusion_checkpoint"] == str(single.resolve())
    assert (repository / "look" / "1").is_dir()


def test_a_single_file_without_configs_on_disk_is_one_line_naming_the_option(
    diffusion_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """No --diffusers-config and an empty Hugging Face cache: refused at once, never downloaded."""
    single = write_ldm_single_file(diffusion_checkpoints["sd"], tmp_path / "model.safetensors")
    environment = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "0"}
    export = [console_script("prodgen-export"), "stable-diffusion", "--checkpoint", str(single)]
    for extra, expected in [
        ([], "configs (stable-diffusion-v1-5/stable-diffusion-v1-5) are not in the local Hugging Face cache"),
        (["--variant", "fp16"], "a single file has one set"),
        (["--diffusers-config", str(tmp_path)], "cannot read model_index.json"),
    ]:
        done = subprocess.run(
            [*export, *extra, "--repository", str(tmp_path / "models")],
            capture_output=True,
            text=True,
            env=environment,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ") and expected in done.stderr


def test_a_file_that_is_not_a_whole_pipeline_is_named(diffusion_checkpoints: dict[str, Path]) -> None:
    """One component's weights in diffusers' layout (a UNet file) is not a single-file checkpoint."""
    folder = diffusion_checkpoints["sd"]
    with pytest.raises(ProdgenError, match="cannot read it as a single-file StableDiffusionPipeline checkpoint"):
        load_stable_diffusion(folder / "unet" / "diffusion_pytorch_model.safetensors", diffusers_config=folder)
