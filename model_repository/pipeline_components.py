"""Point a published diffusion pipeline at other variants of its components, without hand-editing config.pbtxt.

    python -m prodgen.model_repository.pipeline_components models stable_diffusion --variant trt
    python -m prodgen.model_repository.pipeline_components models stable_diffusion --variant openvino
    python -m prodgen.model_repository.pipeline_components models stable_diffusion --variant onnx

The pipeline model finds its components through its config's `prodgen.model.<part>` parameters
(text_encoder, unet, vae_decoder, vae_encoder). `prodgen-export stable-diffusion --fp16` publishes
`NAME_<part>_fp16` (FP16 ONNX for the onnxruntime backend's TensorRT accelerator) and, where
TensorRT is importable or after docker/build_plan.sh, `NAME_<part>_trt` (a TensorRT plan) for
the parts FP16 covers. `prodgen-export stable-diffusion --openvino` publishes `NAME_<part>_openvino`
(OpenVINO IR, for CPUs) for the parts whose pictures pass its gate, and switches to them. Switching rewrites those parameters to the variant wherever the repository
holds it (a part without one keeps its FP32 ONNX component), in one atomic write of the config,
so a polling Triton reloads the pipeline once and finds every component it names already there.
The same write sets how many pictures the pipeline works on at once (its instances: `_pictures_in_flight`).
A preview pipeline published beside it (`NAME_preview`, `--preview-decoder`) is switched with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from prodgen.errors import ProdgenError
from prodgen.model_repository.config import PARAMETER_PREFIX, parse_pbtxt, to_pbtxt
from prodgen.model_repository.publish import CONFIG_FILE, write_text_atomically

PARTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
PREVIEW_PIPELINE_SUFFIX = "_preview"
"""`NAME_preview`: the pipeline `prodgen-export stable-diffusion --preview-decoder` publishes beside `NAME`,
calling the same components but for the VAE decoder (a tiny autoencoder's)."""
VARIANTS = ("onnx", "fp16", "trt", "openvino")
"""`onnx`: the FP32 components the export verified; `fp16`, `trt`: the `_fp16` / `_trt` models (GPU);
`openvino`: the `_openvino` models (CPU), which `prodgen-export stable-diffusion --openvino` gates and publishes."""


def component_models(repository: Path, name: str) -> dict[str, str]:
    """Part → the served model the pipeline `name` calls for it (its config's `prodgen.model.<part>`)."""
    config = parse_pbtxt((repository / name / CONFIG_FILE).read_text())
    return {part: config.parameters[f"{PARAMETER_PREFIX}model.{part}"].string_value for part in PARTS}


def onnx_component(served: str) -> str:
    """The FP32 ONNX component a variant (`NAME_unet_openvino`, `NAME_unet_trt`, ...) was made from."""
    for variant in VARIANTS[1:]:
        if served.endswith(f"_{variant}"):
            return served.removesuffix(f"_{variant}")
    return served


BATCHED_INSTANCES = f"{PARAMETER_PREFIX}batched_instances"
"""The pipeline's instance count while it calls a UNet that batches (the export's `--instances`),
kept in its config by every switch away from one, so that switching back restores it."""


def _batches(repository: Path, served: str) -> bool | None:
    """Whether the served component takes several requests in one call (a dynamic batcher); None: no config."""
    path = repository / served / CONFIG_FILE
    if not path.is_file():
        return None
    config = parse_pbtxt(path.read_text())
    return config.max_batch_size > 0 and config.HasField("dynamic_batching")


def _pictures_in_flight(config: mc.ModelConfig, unet_batches: bool | None) -> int:
    """The pipeline's instance count (pictures worked on at once) for a UNet that does or does not batch.

    Concurrent pictures pay off only where their steps share UNet calls. A UNet without a batcher
    (OpenVINO's: `max_batch_size` 0) takes one picture's guidance pair per call, each call with every
    core, so more pictures in flight only interleave their steps and their text encoder and VAE
    calls contend for the same cores. Measured at 512² on 2 cores with 4 instances (1-step pictures):
    5.64 pictures/min at concurrency 4 against 5.69 at 1, and the slowest of 8 took 5.03× a lone
    picture. With one instance Triton's queue serves pictures first come, first served."""
    if unet_batches is None:
        return _instances(config)
    if not unet_batches:
        return 1
    kept = config.parameters.get(BATCHED_INSTANCES)
    return int(kept.string_value) if kept is not None else _instances(config)


def _instances(config: mc.ModelConfig) -> int:
    return sum(group.count for group in config.instance_group) or 1


def pipeline_instances(repository: Path, name: str) -> int:
    """The pipeline `name`'s instance count: the pictures it works on at once."""
    return _instances(parse_pbtxt((repository / name / CONFIG_FILE).read_text()))


def _set_instances(config: mc.ModelConfig, count: int) -> None:
    kind = config.instance_group[0].kind if config.instance_group else mc.ModelInstanceGroup.KIND_CPU
    config.ClearField("instance_group")
    config.instance_group.add(count=count, kind=kind)


def preview_pipeline(repository: Path, name: str) -> str | None:
    """The preview pipeline published beside the pipeline `name`, if any."""
    preview = name + PREVIEW_PIPELINE_SUFFIX
    path = repository / preview / CONFIG_FILE
    if not path.is_file():
        return None
    return preview if f"{PARAMETER_PREFIX}preview_decoder" in parse_pbtxt(path.read_text()).parameters else None


def switch_components(repository: Path, name: str, variant: str) -> dict[str, str]:
    """Point pipeline `name` at `variant` of each part the repository holds; returns part → served model.

    Its preview pipeline (`preview_pipeline`) is switched too: it calls the same text encoder and UNet,
    and left behind it would draw previews on the components `name` left, and keep a server holding
    them (SD 1.5's FP32 UNet: 3.4 GB)."""
    if variant not in VARIANTS:
        raise ProdgenError(f"variant '{variant}': expected one of {', '.join(VARIANTS)}")
    chosen = _switch(repository, name, variant)
    preview = preview_pipeline(repository, name)
    if preview is not None:
        _switch(repository, preview, variant)
    return chosen


def _switch(repository: Path, name: str, variant: str) -> dict[str, str]:
    """Point pipeline `name` at `variant` of each part it calls, where the repository holds one: the variant
    of the FP32 component each part's current model was made from, so a copy of a pipeline and a preview
    pipeline (whose decoder is its own) switch the components they call."""
    config_path = repository / name / CONFIG_FILE
    if not config_path.is_file():
        raise ProdgenError(f"{config_path} does not exist: publish the pipeline '{name}' first (prodgen-export)")
    config = parse_pbtxt(config_path.read_text())
    calling = config.parameters.get(f"{PARAMETER_PREFIX}model.unet")
    if calling is not None and _batches(repository, calling.string_value):
        config.parameters[BATCHED_INSTANCES].string_value = str(_instances(config))
    chosen: dict[str, str] = {}
    bases: dict[str, str] = {}
    for part in PARTS:
        key = f"{PARAMETER_PREFIX}model.{part}"
        if key not in config.parameters:
            raise ProdgenError(f"model '{name}' is not a diffusion pipeline: its config has no parameter {key}")
        bases[part] = onnx_component(config.parameters[key].string_value)
        wanted = bases[part] if variant == "onnx" else f"{bases[part]}_{variant}"
        chosen[part] = wanted if (repository / wanted / CONFIG_FILE).is_file() else bases[part]
        config.parameters[key].string_value = chosen[part]
    if variant != "onnx" and chosen == bases:
        raise ProdgenError(
            f"no component of '{name}' has a '{variant}' variant in {repository}: "
            + (
                "export with prodgen-export stable-diffusion --openvino"
                if variant == "openvino"
                else "export with prodgen-export stable-diffusion --fp16 (and build plans with docker/build_plan.sh)"
            )
        )
    _set_instances(config, _pictures_in_flight(config, _batches(repository, chosen["unet"])))
    write_text_atomically(config_path, to_pbtxt(config))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path)
    parser.add_argument("name", help="the pipeline model's name")
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    args = parser.parse_args()
    try:
        switch_components(args.repository, args.name, args.variant)
    except ProdgenError as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    preview = preview_pipeline(args.repository, args.name)
    for pipeline in (args.name, *([preview] if preview else [])):
        for part, model in component_models(args.repository, pipeline).items():
            print(f"{pipeline}: {part} → {model}")
        print(
            f"{pipeline}: {pipeline_instances(args.repository, pipeline)} pipeline instance(s), "
            "the pictures it works on at once"
        )


if __name__ == "__main__":
    main()
