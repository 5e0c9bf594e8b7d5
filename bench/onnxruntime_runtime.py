"""ONNX Runtime with session options chosen for the machine it runs on.

- intra-op threads = physical cores: GEMM kernels gain nothing from hyper-threads, and a
  thread per logical CPU fights the caller's own thread on a small machine;
- inter-op threads = 1 and sequential execution: prodgen's graphs are chains of
  convolutions with no independent branches worth running in parallel;
- all graph optimisations (level 3), which on CPU include the NCHWc layout transform
  that lets oneDNN-style blocked convolutions run without reorders between layers;
- spinning worker threads kept on: lower latency per call when the machine is not shared.

On a CUDA machine with onnxruntime-gpu installed the CUDA execution provider is used.
"""

from __future__ import annotations

import onnxruntime

from prodgen.bench.runtime import Inputs, Outputs, Prepared, Runtime, Workload
from prodgen.onnx_sessions import onnx_session, tuned_session_options


def providers_for(device: str) -> list[str]:
    if device == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    description = "ONNX Runtime, FP32, tuned session (threads = physical cores, sequential, all optimisations)"

    def open(self, workload: Workload) -> None:
        super().open(workload)
        self.providers = providers_for(workload.device)
        self.session = onnx_session(workload.onnx_path, tuned_session_options(workload.threads), self.providers)
        self.output_names = [spec.name for spec in workload.model.outputs]

    def prepare(self, inputs: Inputs) -> Prepared:
        feed = {spec.name: inputs[spec.name] for spec in self.workload.model.inputs}
        session, names = self.session, self.output_names

        def run() -> Outputs:
            return list(session.run(names, feed))

        settings = {
            "threads": str(self.workload.threads),
            "provider": self.session.get_providers()[0],
            "optimization": "all",
            "execution": "sequential",
        }
        provider = self.session.get_providers()[0]
        return Prepared(run, "fp32", settings, device="cuda" if provider == "CUDAExecutionProvider" else "cpu")

    def close(self) -> None:
        self.session = None
