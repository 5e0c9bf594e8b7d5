"""Single-file Stable-Diffusion checkpoints (one `.safetensors` or `.ckpt`, as A1111, ComfyUI and kohya
save them) turned into a `save_pretrained` folder by diffusers' own single-file loading.

A single file holds weights only, under the original (LDM) key names; the configs and tokenizers
come from a diffusers folder of the same model: the one given (`--diffusers-config`: its
model_index.json, component configs and tokenizer files; its weights are not read), or the hub
repository diffusers names for the checkpoint's family, taken from the local Hugging Face cache.
Nothing here reaches the network: a config that is not on disk is one line saying what to give.
`.ckpt` files are read by diffusers with `torch.load(weights_only=True)`, so nothing is unpickled.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prodgen.errors import ProdgenError, first_line

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
PIPELINE_CLASSES = {
    "v1": "StableDiffusionPipeline",
    "v2": "StableDiffusionPipeline",
    "inpainting": "StableDiffusionInpaintPipeline",
    "inpainting_v2": "StableDiffusionInpaintPipeline",
    "xl_base": "StableDiffusionXLPipeline",
    "xl_refiner": "StableDiffusionXLImg2ImgPipeline",
    "xl_inpaint": "StableDiffusionXLInpaintPipeline",
}
"""diffusers' name for each checkpoint family prodgen exports, and the pipeline class that reads it."""
CONFIG_HINT = (
    "pass --diffusers-config DIR: a diffusers folder of the same model (model_index.json, the component "
    "configs and tokenizer files; its weights are not read)"
)


def is_single_file(checkpoint: Path) -> bool:
    return checkpoint.is_file() and checkpoint.suffix in SINGLE_FILE_SUFFIXES


@contextmanager
def single_file_as_folder(checkpoint: Path, config: Path | None) -> Iterator[Path]:
    """`checkpoint` converted into a temporary `save_pretrained` folder, removed on leaving (the
    loaded components no longer need it)."""
    with tempfile.TemporaryDirectory(prefix="prodgen-single-file-") as temporary:
        folder = Path(temporary) / checkpoint.stem
        convert_single_file(checkpoint, config, folder)
        yield folder


def convert_single_file(checkpoint: Path, config: Path | None, folder: Path) -> None:
    """Load `checkpoint` with diffusers' `from_single_file` against a local config folder and save it."""
    import diffusers
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    config_folder, class_name = _config_folder(checkpoint, config)
    pipeline_class = getattr(diffusers, class_name)
    try:
        pipeline: Any = pipeline_class.from_single_file(
            str(checkpoint), config=str(config_folder), local_files_only=True
        )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SingleFileComponentError) as error:
        raise ProdgenError(
            f"{checkpoint}: cannot read it as a single-file {class_name} checkpoint with the configs of "
            f"{config_folder}: {first_line(error)}"
        ) from None
    pipeline.save_pretrained(str(folder), safe_serialization=True)


def _config_folder(checkpoint: Path, config: Path | None) -> tuple[Path, str]:
    """The folder whose configs and tokenizers to use, and the pipeline class that reads the checkpoint."""
    if config is not None:
        return config, _class_of_config(config)
    from diffusers.loaders.single_file_utils import (
        DIFFUSERS_DEFAULT_PIPELINE_PATHS,
        infer_diffusers_model_type,
        load_single_file_checkpoint,
    )

    try:
        state = load_single_file_checkpoint(str(checkpoint), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as error:
        raise ProdgenError(f"{checkpoint}: cannot read the weights ({error})") from None
    family = infer_diffusers_model_type(state)
    del state
    if family not in PIPELINE_CLASSES:
        raise ProdgenError(
            f"{checkpoint}: a single-file '{family}' checkpoint; prodgen exports Stable Diffusion 1.x/2.x and SDXL "
            f"({', '.join(PIPELINE_CLASSES)})"
        )
    repository = DIFFUSERS_DEFAULT_PIPELINE_PATHS[family]["pretrained_model_name_or_path"]
    return _cached_configs(checkpoint, family, repository), PIPELINE_CLASSES[family]


def _class_of_config(config: Path) -> str:
    index_path = config / "model_index.json"
    try:
        class_name = json.loads(index_path.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as error:
        raise ProdgenError(
            f"--diffusers-config {config}: cannot read {index_path.name} ({error}); {CONFIG_HINT}"
        ) from None
    if class_name not in PIPELINE_CLASSES.values():
        raise ProdgenError(
            f"--diffusers-config {config}: a {class_name} folder; expected one of "
            f"{', '.join(sorted(set(PIPELINE_CLASSES.values())))}"
        )
    return str(class_name)


def _cached_configs(checkpoint: Path, family: str, repository: str) -> Path:
    """The hub repository's configs from the local Hugging Face cache, never downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repository, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ProdgenError(
            f"{checkpoint}: a single-file '{family}' checkpoint, whose configs ({repository}) are not in the "
            f"local Hugging Face cache; {CONFIG_HINT}"
        ) from None
