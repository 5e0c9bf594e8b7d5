"""TensorRT settings that the plan build (export) and the GPU configs (model_repository) share.

Kept apart from both so each reads it without importing the other: the configs need
tritonclient, and the benchmarks' direct mode builds plans where tritonclient is not installed.
"""

DEFAULT_WORKSPACE_BYTES = 4 << 30
"""TensorRT's builder workspace, the same for a plan prodgen-export builds and for the engines
ONNX Runtime's TensorRT accelerator builds on a GPU Triton: room for tactics, far below a GPU's memory."""
