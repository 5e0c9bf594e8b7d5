#!/usr/bin/env bash
# One-command GPU check of the Stable-Diffusion path: export a checkpoint with --fp16, build the
# TensorRT plans of its UNet and VAE (build_plan.sh, in NVIDIA's TensorRT container), serve the
# repository on NVIDIA's Triton (compose.yaml), then draw the same seeded pictures through the
# pipeline on its FP32 components and on its plans, check them against each other (PSNR gate) and
# time both, interleaved (python -m prodgen.bench.diffusion_gpu_check).
#
#   docker/gpu_check_diffusion.sh CHECKPOINT [REPOSITORY]   # CHECKPOINT: a save_pretrained folder,
#                                                           # or sd15: SD-1.5-sized random weights
# Needs prodgen installed on the host (pip install -e '.[test]'), Docker with the NVIDIA Container
# Toolkit and one NVIDIA GPU. Nothing of it runs on the CPU build machines (no Docker, no GPU there).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
checkpoint=${1:?usage: gpu_check_diffusion.sh CHECKPOINT [REPOSITORY]}
repository=$(realpath -m "${2:-models-gpu-check}")
name=gpu_check
if [ "$checkpoint" = sd15 ]; then
  checkpoint="$repository.sd15-checkpoint"
  python3 -c "import sys; from pathlib import Path; from prodgen.zoo.stable_diffusion_random import write_random_checkpoint as w; w(Path(sys.argv[1]), 'sd15')" "$checkpoint"
fi
prodgen-export stable-diffusion --checkpoint "$checkpoint" --name "$name" --repository "$repository" --fp16
for part in unet vae_decoder vae_encoder; do
  # prodgen-export builds the plan itself where TensorRT imports on the host
  [ -d "$repository/${name}_${part}_trt" ] || "$here/build_plan.sh" "$repository" "${name}_${part}"
done
export PRODGEN_MODELS="$repository"
docker compose -f "$here/compose.yaml" up -d --build --wait triton
trap 'docker compose -f "$here/compose.yaml" down' EXIT
python3 -m prodgen.bench.diffusion_gpu_check --url localhost:8001 --repository "$repository" --name "$name"
