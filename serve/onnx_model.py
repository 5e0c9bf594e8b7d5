"""Triton python-backend model that runs a prodgen `model.onnx` with ONNX Runtime, or an
OpenVINO variant's `model.xml` with OpenVINO.

The embedded server has only Triton's python backend, so each ONNX model is served by
a copy of this file as `model.py`. It imports nothing from prodgen: only numpy,
onnxruntime and Triton's `triton_python_backend_utils`, which the stub provides (and
openvino for a model mirrored from Triton's openvino backend: `prodgen.runtime` = openvino,
compiled with that config's PERFORMANCE_HINT / NUM_STREAMS as the production backend does).

Requests that the dynamic batcher hands over together are concatenated along the batch
axis when their other dimensions agree and run as one ONNX Runtime call. A request that
breaks the model's image bounds gets an error response naming the input; the others in
the batch are unaffected. Each refusal is counted in `prodgen_request_refusals` (REFUSALS_METRIC).

Every input is checked before ONNX Runtime runs, each with an error naming the input and what
is allowed: image sides against the model's bounds from the request's shape alone (before
the body is read), floats for NaN/Inf, and inputs with a declared range (`prodgen.range.*`:
AdaIN's alpha, a conditional generator's class id) against it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

_PREFIX = "prodgen."
_RANGE_PREFIX = _PREFIX + "range."
_ARENA_SHRINKAGE = "memory.enable_memory_arena_shrinkage"

Arrays = dict[str, np.ndarray]
Group = list[tuple[int, Arrays]]


def _invalid_argument(message: str) -> Any:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


REFUSALS_METRIC = "prodgen_request_refusals"
"""Requests answered INVALID_ARGUMENT, per model and version, on Triton's metrics port.

tritonserver 2.51's python backend counts a request answered with an error as a success in
`nv_inference_request_success`; it counts a failure only when `execute` raises, which answers
every request of the batch INTERNAL, and raising after a refusal was sent through the request's
response sender crashed the server (measured: a double free of the response factory). So refusals
are counted here, beside Triton's own counters (later python backends count each error response
as a failure themselves)."""


def refusal_counter(model: str, version: str) -> tuple[Any, Any]:
    """The `REFUSALS_METRIC` family and the counter of one model version in it (shared by its
    instances); keep both: a counter whose family was collected can no longer count."""
    family = pb_utils.MetricFamily(
        name=REFUSALS_METRIC,
        description="Requests refused with INVALID_ARGUMENT (prodgen's checks of inputs and bounds)",
        kind=pb_utils.MetricFamily.COUNTER,
    )
    return family, family.Metric(labels={"model": model, "version": version})


def _unavailable(message: str) -> Any:
    code = getattr(pb_utils.TritonError, "UNAVAILABLE", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


def _memory_options(options: Any, parameters: dict[str, str]) -> Any:
    """Triton onnxruntime backend's memory parameters, read from the same config and applied alike:
    `enable_mem_arena` and `enable_mem_pattern` ("0" turns them off) on the session, and
    `memory.enable_memory_arena_shrinkage` ("cpu:0": the arena gives back after each run what the
    run took beyond what it held before) as a run option. Returns the run options, or None."""
    if parameters.get("enable_mem_arena", "1") == "0":
        options.enable_cpu_mem_arena = False
    if parameters.get("enable_mem_pattern", "1") == "0":
        options.enable_mem_pattern = False
    shrinkage = parameters.get(_ARENA_SHRINKAGE, "")
    if not shrinkage:
        return None
    run_options = ort.RunOptions()
    run_options.add_run_config_entry(_ARENA_SHRINKAGE, shrinkage)
    return run_options


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = _parameters(config)
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.image_inputs = [
            tensor["name"]
            for tensor in config["input"]
            if tensor["data_type"] == "TYPE_UINT8" and len(tensor["dims"]) == 3
        ]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        self.drain_marker = parameters.get(_PREFIX + "drain_marker")
        self.refusal_family, self.refusals = refusal_counter(args["model_name"], args["model_version"])
        self.ranges = {
            key[len(_RANGE_PREFIX) :]: tuple(float(v) for v in value.split(".."))
            for key, value in parameters.items()
            if key.startswith(_RANGE_PREFIX)
        }
        self.min_side = int(parameters.get(_PREFIX + "min_side", "1"))
        self.max_side = int(parameters.get(_PREFIX + "max_side", str(1 << 30)))
        threads = int(parameters.get(_PREFIX + "intra_op_threads", "0"))
        folder = os.path.join(args["model_repository"], args["model_version"])
        if parameters.get(_PREFIX + "runtime") == "openvino":
            self.run = self._openvino(os.path.join(folder, "model.xml"), parameters, threads)
            return
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Threads that spin after a run hold the cores while the response is still being sent;
        # the mirror decides (prodgen.serve.session_threads), ONNX Runtime's default is to spin.
        spinning = parameters.get(_PREFIX + "intra_op_spinning", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        run_options = _memory_options(options, parameters)
        # The mirror links the version's ONNX file under this name (ONNX_FILE of
        # prodgen.model_repository.config); this file runs in Triton's python stub and imports nothing from prodgen.
        session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.run = lambda feed: session.run(self.output_names, feed, run_options)

    def _openvino(self, xml_path: str, parameters: dict[str, str], threads: int) -> Any:
        """OpenVINO's CPU plugin with the settings Triton's openvino backend reads from the same config."""
        import openvino

        properties: dict[str, str] = {k: parameters[k] for k in ("PERFORMANCE_HINT", "NUM_STREAMS") if k in parameters}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = str(threads)
        compiled = openvino.Core().compile_model(xml_path, "CPU", properties)
        request = compiled.create_infer_request()
        ports = [compiled.output(name) for name in self.output_names]

        def run(feed: Arrays) -> list[np.ndarray]:
            results = request.infer(feed)
            return [np.asarray(results[port]) for port in ports]

        return run

    def _check_sides(self, name: str, shape: Any) -> None:
        for label, side in (("height", shape[1]), ("width", shape[2])):
            if not self.min_side <= side <= self.max_side:
                raise ValueError(
                    f"input '{name}': {label} {side} is outside the model's bounds {self.min_side}..{self.max_side} pixels"
                )

    def _check_values(self, name: str, array: np.ndarray) -> None:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"input '{name}': contains NaN or Inf, expected finite numbers")
        if name in self.ranges and array.size:
            low, high = self.ranges[name]
            smallest, largest = array.min(), array.max()
            if smallest < low or largest > high:
                given = smallest if smallest < low else largest
                raise ValueError(f"input '{name}': {given:g} is outside the allowed range {low:g}..{high:g}")

    def _read(self, request: Any) -> Arrays:
        arrays: Arrays = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input '{name}' is missing")
            if name in self.image_inputs:
                self._check_sides(name, tensor.shape())
            arrays[name] = tensor.as_numpy()
            self._check_values(name, arrays[name])
        return arrays

    def execute(self, requests: list[Any]) -> list[Any]:
        if self.drain_marker and os.path.exists(self.drain_marker):
            # The server is draining before it stops: requests that have not started are refused
            # with a status a client retries elsewhere; batches already running finish.
            refusal = "the server is stopping; retry on another server"
            return [pb_utils.InferenceResponse(output_tensors=[], error=_unavailable(refusal)) for _ in requests]
        responses: list[Any] = [None] * len(requests)
        groups: defaultdict[tuple[object, ...], Group] = defaultdict(list)
        for index, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except ValueError as error:
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=_invalid_argument(str(error)))
                self.refusals.increment(1)
                continue
            key = tuple((name, arrays[name].shape[1:]) for name in self.input_names)
            groups[key].append((index, arrays))
        for members in groups.values():
            self._run_group(members, responses)
        return responses

    def _run_group(self, members: Group, responses: list[Any]) -> None:
        feed = {
            name: np.concatenate([arrays[name] for _, arrays in members]) if len(members) > 1 else members[0][1][name]
            for name in self.input_names
        }
        try:
            outputs = self.run(feed)
        except Exception as error:  # noqa: BLE001 - ONNX Runtime's failure goes back to each caller, the server stays up
            for index, _ in members:
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error)))
            return
        if len(members) == 1:
            # the whole output goes back as ONNX Runtime returned it: no slice, no copy here
            tensors = [pb_utils.Tensor(name, output) for name, output in zip(self.output_names, outputs, strict=True)]
            responses[members[0][0]] = pb_utils.InferenceResponse(output_tensors=tensors)
            return
        start = 0
        for index, arrays in members:
            stop = start + arrays[self.input_names[0]].shape[0]
            tensors = [
                pb_utils.Tensor(name, output[start:stop])
                for name, output in zip(self.output_names, outputs, strict=True)
            ]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
            start = stop
