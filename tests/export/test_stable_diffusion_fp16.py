"""The FP16 gate on Stable Diffusion's UNet and VAE, with a VAE decoder that overflows FP16.

SD's own VAE decoder overflows FP16 (activations past 65504 in its up blocks: the reason
"fp16-fix" VAEs exist). Here a tiny decoder is made to do the same by scaling its first
convolution: every later block adds to that residual stream, and the final group norm undoes
the scale, so FP32 output is sound while FP16 tensors overflow to inf.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from prodgen.export.stable_diffusion import export_stable_diffusion
from prodgen.model_repository.config import BatchingOptions

OVERFLOW_SCALE = 3e5


def test_fp16_gate_catches_the_overflowing_decoder_and_keeps_it_fp32(
    diffusion_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from diffusers import AutoencoderKL

    folder = Path(shutil.copytree(diffusion_checkpoints["sd"], tmp_path / "hot-vae"))
    vae = AutoencoderKL.from_pretrained(str(folder / "vae"))
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(OVERFLOW_SCALE)
        vae.decoder.conv_in.bias.mul_(OVERFLOW_SCALE)
    vae.save_pretrained(str(folder / "vae"))

    result = export_stable_diffusion(
        folder, tmp_path / "models", "hot", BatchingOptions(max_batch_size=1, instance_count=1), fp16=True
    )
    by_part = {component.name.removeprefix("hot_"): component for component in result.components}

    decoder = by_part["vae_decoder"]
    assert decoder.fp16 is not None and decoder.fp16_published is not None
    assert decoder.fp16.first.nonfinite > 0, "pure FP16 must overflow: the gate has to see it on CPU"
    assert decoder.fp16.final.passed and decoder.fp16.final.nonfinite == 0
    assert decoder.fp16.kept_by_fallback, "the fallback kept the overflowing layers in FP32"
    assert (decoder.fp16_published.fp16.version_dir / "model.onnx").is_file()
    for part in ("unet", "vae_encoder"):
        outcome = by_part[part].fp16
        assert outcome is not None and outcome.final.passed, part
    assert by_part["text_encoder"].fp16 is None, "the text encoder runs once per request and stays FP32"

    # TensorRT profiles (docker/build_plan.sh reads them): batch up to twice the pictures in flight
    # (CFG halves; one picture here: max batch 1, one pipeline instance), latent sides within the UNet's bounds (tiny: 2..32, tuned at its 16×16 sample size).
    unet_published = by_part["unet"].fp16_published
    assert unet_published is not None
    recipe = json.loads((unet_published.fp16.version_dir / "tensorrt-build.json").read_text())
    assert recipe["plan_model"] == "hot_unet_trt"
    assert recipe["trtexec_shapes"] == [
        "--minShapes=latents:1x4x2x2,timestep:1x1,text_states:1x77x32",
        "--optShapes=latents:1x4x16x16,timestep:1x1,text_states:1x77x32",
        "--maxShapes=latents:2x4x32x32,timestep:2x1,text_states:2x77x32",
    ]
    decoder_recipe = json.loads((decoder.fp16_published.fp16.version_dir / "tensorrt-build.json").read_text())
    assert decoder_recipe["trtexec_shapes"][2] == "--maxShapes=latents:2x4x32x32"
    print({part: c.fp16.final.describe() for part, c in by_part.items() if c.fp16 is not None})
    print("decoder first try:", decoder.fp16.first.describe(), "kept:", len(decoder.fp16.kept_by_fallback))
