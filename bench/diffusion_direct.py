"""prodgen's pipeline and components in one process, without Triton: what serving adds.

The published pipeline `model.py` (with its `schedulers.py`, `seeding.py` and tokenizer) is
loaded from the repository's own version folder and run as it runs in the python backend,
except that `triton_python_backend_utils` is a small stand-in here: a component call
(`InferenceRequest.exec`) runs the component's `model.onnx` in an ONNX Runtime session of this
process, with the threads and memory options the served component gets. So the pictures are
the served ones, and the difference in time is gRPC, Triton's scheduling, the stubs' shared
memory and the business-logic calls.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format

from prodgen.model_repository.config import parse_pbtxt
from prodgen.model_repository.publish import CONFIG_FILE, ONNX_FILE, versions
from prodgen.onnx_sessions import cpu_session

PIPELINE_PARTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")


@dataclass
class _Tensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


class _Error:
    def __init__(self, message: str, _code: object = None) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


@dataclass
class _Response:
    output_tensors: list[_Tensor]
    error: Any = None

    def has_error(self) -> bool:
        return self.error is not None


def _stand_in(sessions: dict[str, Any]) -> types.ModuleType:
    """The part of `triton_python_backend_utils` the pipeline model uses, calling local sessions."""
    module = types.ModuleType("triton_python_backend_utils")

    class InferenceRequest:
        def __init__(self, model_name: str, requested_output_names: list[str], inputs: list[_Tensor]) -> None:
            self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs

        def exec(self) -> _Response:
            session = sessions[self.model_name]
            arrays = session.run(self.outputs, {tensor.name: tensor.array for tensor in self.inputs})
            return _Response([_Tensor(n, a) for n, a in zip(self.outputs, arrays, strict=True)])

    class MetricFamily:
        """The server's metrics: in one process, a refusal counter that counts nowhere."""

        COUNTER = "counter"

        def __init__(self, **_family: object) -> None:
            pass

        def Metric(self, **_labels: object) -> Any:  # noqa: N802  (Triton's own method name)
            return types.SimpleNamespace(increment=lambda _value: None)

    def get_tensor(holder: Any, name: str) -> _Tensor | None:
        tensors = holder.output_tensors if isinstance(holder, _Response) else holder
        return next((tensor for tensor in tensors if tensor.name == name), None)

    module.Tensor = _Tensor  # type: ignore[attr-defined]
    module.TritonError = _Error  # type: ignore[attr-defined]
    module.InferenceRequest = InferenceRequest  # type: ignore[attr-defined]
    module.InferenceResponse = _Response  # type: ignore[attr-defined]
    module.MetricFamily = MetricFamily  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = get_tensor  # type: ignore[attr-defined]
    module.get_output_tensor_by_name = get_tensor  # type: ignore[attr-defined]
    return module


def _newest(model_dir: Path) -> Path:
    return model_dir / str(max(versions(model_dir)))


class DirectPipeline:
    """The repository's pipeline `name` run in this process: `picture(...)` as the server would answer."""

    def __init__(self, repository: Path, name: str, threads: int) -> None:
        config = parse_pbtxt((repository / name / CONFIG_FILE).read_text())
        parameters = {key: value.string_value for key, value in config.parameters.items()}
        sessions = {}
        for part in PIPELINE_PARTS:
            served = parameters[f"prodgen.model.{part}"]
            sessions[served] = cpu_session(str(_newest(repository / served) / ONNX_FILE), threads, spinning=False)
        folder = _newest(repository / name)
        previous = sys.modules.get("triton_python_backend_utils")
        sys.modules["triton_python_backend_utils"] = _stand_in(sessions)
        try:
            spec = importlib.util.spec_from_file_location(f"prodgen_direct_{name}", folder / "model.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            if previous is not None:
                sys.modules["triton_python_backend_utils"] = previous
        self.model = module.TritonPythonModel()
        self.model.initialize(
            {
                "model_config": json_format.MessageToJson(config, preserving_proto_field_name=True),
                "model_name": name,
                "model_repository": str(repository / name),
                "model_version": folder.name,
            }
        )

    def picture(self, prompt: str, seed: int, steps: int, guidance: float, scheduler: str, side: int) -> np.ndarray:
        request = [
            _Tensor("prompt", np.array([[prompt.encode("utf-8")]], dtype=np.object_)),
            _Tensor("seed", np.array([[seed]], dtype=np.int64)),
            _Tensor("steps", np.array([[steps]], dtype=np.int64)),
            _Tensor("guidance", np.array([[guidance]], dtype=np.float32)),
            _Tensor("scheduler", np.array([[scheduler.encode("utf-8")]], dtype=np.object_)),
            _Tensor("height", np.array([[side]], dtype=np.int64)),
            _Tensor("width", np.array([[side]], dtype=np.int64)),
        ]
        (response,) = self.model.execute([request])
        if response.has_error():
            raise RuntimeError(response.error.message())
        image = next(tensor for tensor in response.output_tensors if tensor.name == "image")
        return image.array
