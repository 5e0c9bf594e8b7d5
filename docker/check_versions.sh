#!/usr/bin/env bash
# Inside the built image (docker run --rm prodgen-triton:25.10 /opt/prodgen/check_versions.sh):
# the TensorRT, CUDA and ONNX Runtime the image really has, against docker/versions.env.
set -euo pipefail
image_cuda=${CUDA_VERSION:-}  # NVIDIA's images set CUDA_VERSION; read it before versions.env's replaces it
source "$(dirname "$0")/versions.env"
status=0
check() {  # name wanted found
  if [[ "$3" == "$2"* ]]; then echo "ok   $1 $3"; else echo "DIFF $1: versions.env says $2, image has ${3:-nothing}"; status=1; fi
}
check tritonserver "$TRITON_SERVER_VERSION" "$(cat /opt/tritonserver/TRITON_VERSION 2>/dev/null || true)"
check TensorRT "$TENSORRT_VERSION" "$(ls /usr/lib/x86_64-linux-gnu/libnvinfer.so.* 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | sort -V | tail -1 || true)"
check CUDA "$CUDA_VERSION" "$image_cuda"
check onnxruntime "$ONNXRUNTIME_VERSION" "$(ls /opt/tritonserver/backends/onnxruntime/libonnxruntime.so.* 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | sort -V | tail -1 || true)"
exit $status
