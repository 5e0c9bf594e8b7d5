"""TensorRT, built in the run by the export's own builder from the FP16 ONNX of the model.

The engine comes from `prodgen.export.tensorrt_build.build_plan` (strongly typed from the
mixed-precision ONNX on TensorRT >= 10.12 and 11.x, FP16 flag on older 10.x), so the bench
times the same kind of engine `prodgen-export --fp16` publishes. TensorRT is imported
lazily; where it is missing this runtime is skipped with the reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import onnx
import torch

from prodgen.bench.runtime import Inputs, Outputs, Prepared, Runtime, RuntimeUnavailable, Workload
from prodgen.errors import ProdgenError
from prodgen.export.fp16_graph import convert_to_fp16
from prodgen.export.tensorrt_build import build_plan, import_tensorrt


def load_tensorrt() -> Any:
    """The real tensorrt module, or `RuntimeUnavailable` saying what to install."""
    try:
        return import_tensorrt()
    except ProdgenError as error:
        raise RuntimeUnavailable(str(error)) from None


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT8: torch.int8,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT64: torch.int64,
        trt.DataType.UINT8: torch.uint8,
        trt.DataType.BOOL: torch.bool,
    }
    return table[dtype]


class TensorRT(Runtime):
    name = "tensorrt"
    description = "TensorRT engine from the FP16 ONNX, built as prodgen-export --fp16 builds it"

    def open(self, workload: Workload) -> None:
        super().open(workload)
        tensorrt = load_tensorrt()
        if workload.device != "cuda" or not torch.cuda.is_available():
            raise RuntimeUnavailable("TensorRT needs a CUDA GPU, and this run has none")
        self.trt = tensorrt
        self.logger = tensorrt.Logger(tensorrt.Logger.WARNING)
        self.folder = Path(tempfile.mkdtemp(prefix="prodgen-bench-trt-"))
        self.fp16_onnx = self.folder / "model_fp16.onnx"
        onnx.save(convert_to_fp16(onnx.load(str(workload.onnx_path))).model, str(self.fp16_onnx))

    def _engine(self, inputs: Inputs) -> Any:
        batch = next(iter(inputs.values())).shape[0]
        plan = self.folder / f"batch{batch}.plan"
        build_plan(
            self.fp16_onnx, self.workload.onnx_path, self.workload.model, batch, (), plan, self.folder / "timing.cache"
        )
        return self.trt.Runtime(self.logger).deserialize_cuda_engine(plan.read_bytes())

    def prepare(self, inputs: Inputs) -> Prepared:
        trt = self.trt
        engine = self._engine(inputs)
        context = engine.create_execution_context()
        device = torch.device("cuda")
        host_inputs: dict[str, torch.Tensor] = {}
        device_tensors: dict[str, torch.Tensor] = {}
        for spec in self.workload.model.inputs:
            context.set_input_shape(spec.name, tuple(inputs[spec.name].shape))
            host_inputs[spec.name] = torch.from_numpy(inputs[spec.name]).pin_memory()
            device_tensors[spec.name] = torch.empty(
                inputs[spec.name].shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(spec.name)), device=device
            )
        for spec in self.workload.model.outputs:
            shape = tuple(context.get_tensor_shape(spec.name))
            device_tensors[spec.name] = torch.empty(
                shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(spec.name)), device=device
            )
        for name, tensor in device_tensors.items():
            context.set_tensor_address(name, tensor.data_ptr())
        runner = _EngineRunner(
            engine, context, host_inputs, device_tensors, [spec.name for spec in self.workload.model.outputs]
        )
        return Prepared(runner, "fp16", {"tensorrt": trt.__version__, "profile": "the model's declared bounds"})


class _EngineRunner:
    """One end-to-end call: inputs to the GPU, the engine, outputs back; holds the engine alive."""

    def __init__(
        self,
        engine: Any,
        context: Any,
        host_inputs: dict[str, torch.Tensor],
        device_tensors: dict[str, torch.Tensor],
        output_names: list[str],
    ) -> None:
        self.engine = engine
        self.context = context
        self.host_inputs = host_inputs
        self.device_tensors = device_tensors
        self.output_names = output_names
        self.stream = torch.cuda.Stream()

    def __call__(self) -> Outputs:
        with torch.cuda.stream(self.stream):
            for name, host in self.host_inputs.items():
                self.device_tensors[name].copy_(host, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            results = [self.device_tensors[name].to("cpu", non_blocking=True) for name in self.output_names]
        self.stream.synchronize()
        return [result.numpy() for result in results]
