"""OpenVINO on the CPU: one way to convert a verified ONNX to OpenVINO's IR and to run it.

Export (to decide and check the `<name>_openvino` variant) and the benchmarks run OpenVINO
through here with the settings the published config gives Triton's openvino backend
(`OPENVINO_PARAMETERS`), so that what is measured is what is served. OpenVINO is an optional
extra (`pip install 'prodgen[openvino]'`); it is imported only when asked for.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from prodgen.errors import ProdgenError
from prodgen.model_repository.config import OPENVINO_PARAMETERS

Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
MISSING = "OpenVINO is not installed: pip install 'prodgen[openvino]'"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_version() -> str | None:
    if not openvino_available():
        return None
    import openvino

    return str(openvino.__version__)


def save_ir(onnx_path: Path, xml_path: Path) -> None:
    """`onnx_path` as OpenVINO IR (`xml_path` and its `.bin`), weights kept in FP32.

    `openvino.save_model` compresses weights to FP16 unless told not to; the variant is
    checked as an FP32 runtime, like the ONNX it replaces."""
    if not openvino_available():
        raise ProdgenError(MISSING)
    import openvino

    write_ir(openvino.convert_model(str(onnx_path)), xml_path)


def write_ir(model: Any, xml_path: Path) -> None:
    """The OpenVINO `model` saved as IR at `xml_path` (weights as they are). OpenVINO reports a write that
    fails, a full disk above all, as `basic_ios::clear: iostream error`: it becomes a line naming the file
    and the space left."""
    import openvino

    try:
        openvino.save_model(model, str(xml_path), compress_to_fp16=False)
    except RuntimeError as failed:
        free_gb = shutil.disk_usage(xml_path.parent).free / 1e9
        said = [line.strip() for line in str(failed).splitlines() if line.strip()]  # its last line says what failed
        raise ProdgenError(
            f"could not write the OpenVINO IR {xml_path} ({free_gb:.1f} GB free on its disk; "
            f"OpenVINO said: {said[-1] if said else type(failed).__name__})"
        ) from None


def openvino_runner(model_path: Path, output_names: list[str], threads: int = 0) -> Run:
    """A callable running `model_path` (IR or ONNX) on the CPU with the published settings;
    threads 0: OpenVINO's default (the machine's cores)."""
    if not openvino_available():
        raise ProdgenError(MISSING)
    import openvino

    properties: dict[str, str] = dict(OPENVINO_PARAMETERS)
    if threads:
        properties["INFERENCE_NUM_THREADS"] = str(threads)
    compiled = openvino.Core().compile_model(str(model_path), "CPU", properties)
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in output_names]

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = request.infer(feed)
        return [np.asarray(results[port]) for port in outputs]

    return run


def inference_precision() -> str:
    """The precision OpenVINO's CPU plugin runs FP32 models in on this machine by default."""
    if not openvino_available():
        raise ProdgenError(MISSING)
    import openvino

    return str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name())
