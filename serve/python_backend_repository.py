"""Mirror a prodgen model repository as python-backend models the embedded server can load.

Each `onnxruntime` model keeps its name, inputs, outputs, batching and versions; only
the backend changes (to python, running `serve/onnx_model.py` over the same `model.onnx`),
so clients see exactly what a production Triton with the onnxruntime backend would show.
Models this server cannot run (TensorRT plans) are left out and reported.

`sync_mirror` is incremental and atomic like publishing itself (new models and versions
appear with one rename), so it can run again while the server polls its repository:
a version published into the source repository shows up in the server without a restart.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from prodgen.model_repository.config import PARAMETER_PREFIX, parse_pbtxt, to_pbtxt
from prodgen.model_repository.publish import (
    CONFIG_FILE,
    ONNX_FILE,
    model_names,
    staging_dir,
    versions,
    write_text_atomically,
)

PYTHON_MODEL_SOURCE = Path(__file__).with_name("onnx_model.py")


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
    mirrored.ClearField("model_warmup")  # it builds GPU engines; on CPU it would only delay loading
    count = sum(group.count for group in config.instance_group) or 1
    mirrored.ClearField("instance_group")
    mirrored.instance_group.add(count=count, kind=mc.ModelInstanceGroup.KIND_CPU)
    mirrored.parameters[PARAMETER_PREFIX + "intra_op_threads"].string_value = str(intra_op_threads)
    return mirrored


def _is_onnx_model(config: mc.ModelConfig) -> bool:
    return config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx"


def _onnx_versions(model_dir: Path) -> list[int]:
    return [v for v in versions(model_dir) if (model_dir / str(v) / ONNX_FILE).is_file()]


def _fill_version(source: Path, folder: Path) -> None:
    """A hard link (a copy across filesystems), not a symlink: when `prodgen rollback` moves a
    version folder aside, the mirror's loaded copy must stay readable until the mirror follows."""
    shutil.copyfile(PYTHON_MODEL_SOURCE, folder / "model.py")
    try:
        os.link((source / ONNX_FILE).resolve(), folder / ONNX_FILE)
    except OSError:
        shutil.copyfile(source / ONNX_FILE, folder / ONNX_FILE)


def _remove_atomically(folder: Path) -> None:
    """Rename first, then delete: a server scanning the mirror never sees a half-deleted version."""
    hidden = folder.with_name(f".removing-{folder.name}-{os.getpid()}")
    folder.rename(hidden)
    shutil.rmtree(hidden)


def _sync_model(source: Path, target: Path, config_text: str, staging_root: Path) -> None:
    wanted = _onnx_versions(source)
    if not target.exists():
        with staging_dir(staging_root, f".{target.name}-") as staging:
            staged = staging / target.name
            for version in wanted:
                (staged / str(version)).mkdir(parents=True)
                _fill_version(source / str(version), staged / str(version))
            (staged / CONFIG_FILE).write_text(config_text)
            staged.rename(target)
        return
    for version in wanted:
        if not (target / str(version)).exists():
            with staging_dir(target, ".staging-") as staging:
                _fill_version(source / str(version), staging)
                staging.rename(target / str(version))
    for version in set(versions(target)) - set(wanted):
        _remove_atomically(target / str(version))
    if (target / CONFIG_FILE).read_text() != config_text:
        write_text_atomically(target / CONFIG_FILE, config_text)


def sync_mirror(repository: Path, target: Path, intra_op_threads: int = 0) -> MirrorResult:
    """Bring the python-backend mirror at `target` up to date with `repository`."""
    target.mkdir(parents=True, exist_ok=True)
    staging_root = target.parent / f".{target.name}.staging"
    staging_root.mkdir(exist_ok=True)
    served: list[str] = []
    skipped: dict[str, str] = {}
    for name in model_names(repository):
        source = repository / name
        config = parse_pbtxt((source / CONFIG_FILE).read_text())
        if config.platform == "tensorrt_plan":
            skipped[name] = "TensorRT plan (model.plan): needs a GPU Triton with the tensorrt backend"
        elif not _is_onnx_model(config):
            skipped[name] = f"backend '{config.backend or config.platform}' needs a GPU Triton"
        elif not _onnx_versions(source):
            skipped[name] = f"no version with {ONNX_FILE}"
        else:
            _sync_model(source, target / name, to_pbtxt(python_backend_config(config, intra_op_threads)), staging_root)
            served.append(name)
    for stale in set(model_names(target)) - set(served):
        _remove_atomically(target / stale)
    return MirrorResult(served, skipped)
