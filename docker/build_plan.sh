#!/usr/bin/env bash
# Build <name>_trt/<version>/model.plan from the latest <name>_fp16 in a prodgen model
# repository, with trtexec inside NVIDIA's TensorRT container, on the GPU that will serve it.
# Shapes and the plan's config.pbtxt come from <name>_fp16/<version>/tensorrt-build.json,
# written by `prodgen-export --fp16`, so nothing is typed by hand.
#
#   docker/build_plan.sh models candy            # TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:<tag>
set -euo pipefail
repository=$(realpath "${1:?usage: build_plan.sh REPOSITORY NAME}")
name=${2:?usage: build_plan.sh REPOSITORY NAME}
source "$(dirname "$0")/versions.env"  # the TensorRT of the Triton release that serves the plan
image=${TENSORRT_IMAGE:-nvcr.io/nvidia/tensorrt:${TRITON_RELEASE}-py3}
source_dir="$repository/${name}_fp16"
version=$(ls "$source_dir" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1 || true)
[ -n "$version" ] || { echo "no published version in $source_dir (run prodgen-export $name --fp16)" >&2; exit 1; }
recipe="$source_dir/$version/tensorrt-build.json"
read_recipe() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r[sys.argv[2]] if isinstance(r[sys.argv[2]], str) else ' '.join(r[sys.argv[2]]))" "$recipe" "$1"; }
plan_model=$(read_recipe plan_model)
shapes=$(read_recipe trtexec_shapes)
staging=$(mktemp -d "$(dirname "$repository")/.${plan_model}.staging-XXXXXX")
trap 'rm -rf "$staging"' EXIT
# The same timing cache file prodgen-export uses when TensorRT is importable: beside the repository.
cache_dir=$(dirname "$repository")
cache_file=".$(basename "$repository").prodgen-tensorrt.timing-cache"
docker run --rm --gpus all -v "$source_dir/$version:/in:ro" -v "$staging:/out" -v "$cache_dir:/cache" "$image" bash -c "
  set -e
  trtexec --onnx=/in/model.onnx --stronglyTyped $shapes \
    --timingCacheFile=/cache/$cache_file --saveEngine=/out/model.plan
  python3 - <<'PY'
import json, subprocess, tensorrt
name, cc = subprocess.check_output(['nvidia-smi', '--query-gpu=name,compute_cap', '--format=csv,noheader'], text=True).splitlines()[0].split(', ')
json.dump({'tensorrt_version': tensorrt.__version__, 'gpu_name': name, 'compute_capability': cc,
           'strongly_typed': True, 'profiles': []}, open('/out/tensorrt-plan.json', 'w'), indent=2)
PY
"
read_recipe plan_config_pbtxt > "$staging/config.pbtxt"
target="$repository/$plan_model"
mkdir -p "$target"
next=$(( $(ls "$target" | grep -E '^[0-9]+$' | sort -n | tail -1 || echo 0) + 1 ))
mkdir "$staging/$next" && mv "$staging/model.plan" "$staging/tensorrt-plan.json" "$staging/$next/"
mv "$staging/$next" "$target/$next"
mv "$staging/config.pbtxt" "$target/config.pbtxt"
echo "built $target/$next/model.plan"
