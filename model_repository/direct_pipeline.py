"""A published diffusion pipeline and its components run in one process, without Triton.

The published pipeline `model.py` (with its `schedulers.py`, `seeding.py` and tokenizer) is
loaded from the repository's own version folder and run as it runs in the python backend,
except that `triton_python_backend_utils` is a small stand-in here: a component call
(`InferenceRequest.exec`) runs the component the pipeline's config names, in this process, on
the runtime its own config gives it: `model.onnx` in an ONNX Runtime session, or `model.xml` on
OpenVINO's CPU plugin with the served settings. So the pictures are the served ones. Two users:
`prodgen-bench diffusion`'s `direct` runner (the difference in time to the served pipeline is
gRPC, Triton's scheduling, the stubs' shared memory and the business-logic calls), and the
whole-picture gate of the OpenVINO components (export/stable_diffusion_openvino.py), which swaps
components in and times each.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format

from prodgen.model_repository.config import parse_pbtxt
from prodgen.model_repository.pipeline_components import PARTS, component_models
from prodgen.model_repository.publish import CONFIG_FILE, ONNX_FILE, OPENVINO_FILE, newest_version
from prodgen.onnx_sessions import cpu_session

Run = Callable[[list[str], dict[str, np.ndarray]], list[np.ndarray]]
"""A component: (output names, feed) → outputs, as `InferenceRequest.exec` gets them."""


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


def _stand_in(runs: dict[str, Run]) -> types.ModuleType:
    """The part of `triton_python_backend_utils` the pipeline model uses, calling local sessions."""
    module = types.ModuleType("triton_python_backend_utils")

    class InferenceRequest:
        def __init__(self, model_name: str, requested_output_names: list[str], inputs: list[_Tensor]) -> None:
            self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs

        def exec(self) -> _Response:
            arrays = runs[self.model_name](self.outputs, {tensor.name: tensor.array for tensor in self.inputs})
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


def component_run(model_dir: Path, threads: int) -> Run:
    """The newest version of a published component on the runtime its config names, with the served settings."""
    config = parse_pbtxt((model_dir / CONFIG_FILE).read_text())
    folder = newest_version(model_dir)
    if config.backend == "openvino":
        from prodgen.openvino_runtime import openvino_runner

        outputs = [tensor.name for tensor in config.output]
        run = openvino_runner(folder / OPENVINO_FILE, outputs, threads)

        def run_openvino(wanted: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            produced = dict(zip(outputs, run(feed), strict=True))
            return [produced[output] for output in wanted]

        return run_openvino
    session = cpu_session(str(folder / ONNX_FILE), threads, spinning=False)
    return lambda wanted, feed: session.run(wanted, feed)


class DirectPipeline:
    """The repository's pipeline `name` run in this process: `picture(...)` as the server would answer.

    `components`: part → a served model in the repository to call instead of the one the
    pipeline's config names (how the OpenVINO gate swaps in its candidates). `seconds[part]` adds
    up the time spent in each part's calls; while `record` names parts, `recorded[part]` keeps
    every feed they get (the INT8 UNet's calibration: the inputs of its own denoising trajectories)."""

    def __init__(
        self,
        repository: Path,
        name: str,
        threads: int,
        components: dict[str, Path] | None = None,
    ) -> None:
        config = parse_pbtxt((repository / name / CONFIG_FILE).read_text())
        named = component_models(repository, name)
        chosen = {part: (components or {}).get(part, repository / served) for part, served in named.items()}
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.record: tuple[str, ...] = ()
        self.recorded: dict[str, list[dict[str, np.ndarray]]] = {}
        runs = {named[part]: self._timed(part, component_run(chosen[part], threads)) for part in PARTS}
        folder = newest_version(repository / name)
        previous = sys.modules.get("triton_python_backend_utils")
        sys.modules["triton_python_backend_utils"] = _stand_in(runs)
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

    def _timed(self, part: str, run: Run) -> Run:
        def timed(wanted: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            if part in self.record:
                self.recorded.setdefault(part, []).append({key: np.array(value) for key, value in feed.items()})
            began = time.perf_counter()
            try:
                return run(wanted, feed)
            finally:
                self.seconds[part] += time.perf_counter() - began

        return timed

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
