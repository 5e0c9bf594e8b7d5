"""Mirror a prodgen model repository as python-backend models the embedded server can load.

Each `onnxruntime` model keeps its name, inputs, outputs, batching and versions; only
the backend changes (to python, running `serve/onnx_model.py` over the same `model.onnx`),
so clients see exactly what a production Triton with the onnxruntime backend would show.
Models this server cannot run (TensorRT plans) are left out
and reported.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from prodgen.model_repository.config import PARAMETER_PREFIX, parse_pbtxt, to_pbtxt
from prodgen.model_repository.publish import CONFIG_FILE, model_names, versions

PYTHON_MODEL_SOURCE = Path(__file__).with_name("onnx_model.py")
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class MirrorResult:
    served: list[str]
    skipped: dict[str, str]


def python_backend_config(config: mc.ModelConfig, intra_op_threads: int) -> mc.ModelConfig:
    mirrored = mc.ModelConfig()
    mirrored.CopyFrom(config)
    mirrored.backend = "python"
    mirrored.ClearField("platform")
    mirrored.ClearField("default_model_filename")
    mirrored.ClearField("optimization")
    count = sum(group.count for group in config.instance_group) or 1
    mirrored.ClearField("instance_group")
    mirrored.instance_group.add(count=count, kind=mc.ModelInstanceGroup.KIND_CPU)
    mirrored.parameters[PARAMETER_PREFIX + "intra_op_threads"].string_value = str(intra_op_threads)
    return mirrored


def _is_onnx_model(config: mc.ModelConfig) -> bool:
    return config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx"


def _mirror_model(source: Path, target: Path, config: mc.ModelConfig, intra_op_threads: int) -> None:
    target.mkdir(parents=True)
    for version in versions(source):
        onnx_file = source / str(version) / ONNX_FILE
        if not onnx_file.is_file():
            continue
        version_dir = target / str(version)
        version_dir.mkdir()
        shutil.copyfile(PYTHON_MODEL_SOURCE, version_dir / "model.py")
        os.symlink(onnx_file.resolve(), version_dir / ONNX_FILE)
    (target / CONFIG_FILE).write_text(to_pbtxt(python_backend_config(config, intra_op_threads)))


def mirror_repository(repository: Path, target: Path, intra_op_threads: int = 0) -> MirrorResult:
    served: list[str] = []
    skipped: dict[str, str] = {}
    for name in model_names(repository):
        source = repository / name
        config = parse_pbtxt((source / CONFIG_FILE).read_text())
        if not _is_onnx_model(config):
            skipped[name] = f"backend '{config.backend or config.platform}' needs a GPU Triton"
            continue
        if not any((source / str(v) / ONNX_FILE).is_file() for v in versions(source)):
            skipped[name] = "no version with model.onnx"
            continue
        _mirror_model(source, target / name, config, intra_op_threads)
        served.append(name)
    return MirrorResult(served, skipped)
