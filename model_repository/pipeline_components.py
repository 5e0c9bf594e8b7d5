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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prodgen.errors import ProdgenError
from prodgen.model_repository.config import PARAMETER_PREFIX, parse_pbtxt, to_pbtxt
from prodgen.model_repository.publish import CONFIG_FILE, write_text_atomically

PARTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
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


def switch_components(repository: Path, name: str, variant: str, components: str | None = None) -> dict[str, str]:
    """Point pipeline `name` at `variant` of each part the repository holds; returns part → served model.

    `components`: the name the components were published under (`<components>_unet`, ...), when
    the pipeline is a copy under another name; by default the pipeline's own."""
    if variant not in VARIANTS:
        raise ProdgenError(f"variant '{variant}': expected one of {', '.join(VARIANTS)}")
    config_path = repository / name / CONFIG_FILE
    if not config_path.is_file():
        raise ProdgenError(f"{config_path} does not exist: publish the pipeline '{name}' first (prodgen-export)")
    config = parse_pbtxt(config_path.read_text())
    chosen: dict[str, str] = {}
    for part in PARTS:
        key = f"{PARAMETER_PREFIX}model.{part}"
        if key not in config.parameters:
            raise ProdgenError(f"model '{name}' is not a diffusion pipeline: its config has no parameter {key}")
        base = f"{components or name}_{part}"
        wanted = base if variant == "onnx" else f"{base}_{variant}"
        chosen[part] = wanted if (repository / wanted / CONFIG_FILE).is_file() else base
        config.parameters[key].string_value = chosen[part]
    if variant != "onnx" and all(served == f"{components or name}_{part}" for part, served in chosen.items()):
        raise ProdgenError(
            f"no component of '{name}' has a '{variant}' variant in {repository}: "
            + (
                "export with prodgen-export stable-diffusion --openvino"
                if variant == "openvino"
                else "export with prodgen-export stable-diffusion --fp16 (and build plans with docker/build_plan.sh)"
            )
        )
    write_text_atomically(config_path, to_pbtxt(config))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path)
    parser.add_argument("name", help="the pipeline model's name")
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    args = parser.parse_args()
    try:
        chosen = switch_components(args.repository, args.name, args.variant)
    except ProdgenError as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    for part, served in chosen.items():
        print(f"{args.name}: {part} → {served}")


if __name__ == "__main__":
    main()
