"""Mirror a prodgen model repository as python-backend models the embedded server can load.

Each `onnxruntime` model keeps its name, inputs, outputs, batching and versions; only
the backend changes (to python, running `serve/onnx_model.py` over the same `model.onnx`),
so clients see exactly what a production Triton with the onnxruntime backend would show.
An `openvino` model (`<name>_openvino`, OpenVINO IR) is mirrored the same way, with the same
python model running its `model.xml` through OpenVINO (`prodgen.runtime` = openvino).
Models this server cannot run (TensorRT plans) are left out and reported, and so are the
diffusion components no pipeline calls at startup (the FP32 ones after a switch to OpenVINO). Models that
already are python-backend models (the Stable-Diffusion pipeline) pass through unchanged.
Every file of a version is mirrored, so ONNX external data (`model.onnx.data`) lies beside
`model.onnx` as ONNX Runtime expects, and a python model finds its neighbours.

`sync_mirror` is incremental and atomic like publishing itself (new models and versions
appear with one rename), so it can run again while the server polls its repository:
a version published into the source repository shows up in the server without a restart.

A version enters the mirror only if its `model.onnx` parses as an ONNX model: a truncated or
half-copied file beside a working version would otherwise fail to load in Triton, again at
every poll, and with strict readiness turn the whole server not ready. Refused versions are
reported (`MirrorResult.rejected`) and the model keeps serving its newest valid version.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from tritonclient.grpc import model_config_pb2 as mc

from prodgen.model_repository.config import PARAMETER_PREFIX, parse_pbtxt, to_pbtxt
from prodgen.model_repository.publish import (
    CONFIG_FILE,
    ONNX_FILE,
    OPENVINO_FILE,
    model_names,
    staging_dir,
    versions,
    write_text_atomically,
)
from prodgen.names import name_problem
from prodgen.serve import session_threads

PYTHON_MODEL_SOURCE = Path(__file__).with_name("onnx_model.py")
DRAIN_MARKER = "draining"
"""A file beside the mirror; while it exists every served model answers UNAVAILABLE at once."""


@dataclass(frozen=True)
class MirrorResult:
    served: list[str]
    skipped: dict[str, str]
    changed: list[str] = field(default_factory=list)
    """Served models whose mirrored config or versions changed in this sync (to load again)."""
    rejected: dict[str, str] = field(default_factory=dict)
    """`<model>/<version>` left out of the mirror, with the reason."""


def python_backend_config(
    config: mc.ModelConfig, intra_op_threads: int, drain_marker: Path | None = None
) -> mc.ModelConfig:
    """The python-backend twin of an onnxruntime model; `intra_op_threads` 0 gives each instance
    a thread per physical core (`prodgen.serve.session_threads`)."""
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
    mirrored.parameters[PARAMETER_PREFIX + "intra_op_threads"].string_value = str(
        session_threads.intra_op_threads(intra_op_threads)
    )
    mirrored.parameters[PARAMETER_PREFIX + "intra_op_spinning"].string_value = str(int(session_threads.ALLOW_SPINNING))
    if _is_openvino_model(config):
        mirrored.parameters[PARAMETER_PREFIX + "runtime"].string_value = "openvino"
    if drain_marker is not None:
        mirrored.parameters[PARAMETER_PREFIX + "drain_marker"].string_value = str(drain_marker)
    return mirrored


def _is_onnx_model(config: mc.ModelConfig) -> bool:
    return config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx"


def _is_openvino_model(config: mc.ModelConfig) -> bool:
    return config.backend == "openvino"


def _is_python_model(config: mc.ModelConfig) -> bool:
    return config.backend == "python"


def _task(config: mc.ModelConfig) -> str:
    task = config.parameters.get(PARAMETER_PREFIX + "task")
    return "" if task is None else task.string_value


def _components_named(configs: dict[str, mc.ModelConfig]) -> set[str]:
    """Every model a diffusion pipeline of the repository calls (its `prodgen.model.<part>` parameters).
    Restage models are left out: they call only their pipeline, and those published before their config
    stopped copying the pipeline's component names still carry names a switch has made stale."""
    prefix = PARAMETER_PREFIX + "model."
    return {
        value.string_value
        for config in configs.values()
        if _is_python_model(config) and _task(config) == "diffusion"
        for key, value in config.parameters.items()
        if key.startswith(prefix)
    }


def _is_diffusion_component(config: mc.ModelConfig) -> bool:
    return not _is_python_model(config) and _task(config) == "diffusion"


def _versions_with(model_dir: Path, file_name: str = ONNX_FILE) -> list[int]:
    return [v for v in versions(model_dir) if (model_dir / str(v) / file_name).is_file()]


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(Path(source).resolve(), target)
    except OSError:
        shutil.copyfile(source, target)


_checked: dict[tuple[str, int, int], str | None] = {}


def onnx_problem(path: Path) -> str | None:
    """Why `path` is not a loadable ONNX model, or None; remembered per file size and mtime."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _checked:
        try:
            onnx.checker.check_model(str(path))
            _checked[key] = None
        except Exception as error:  # noqa: BLE001 - any parse or check failure means "do not serve this"
            _checked[key] = f"{ONNX_FILE} is not a valid ONNX model ({type(error).__name__}: {str(error)[:160]})"
    return _checked[key]


def _valid_versions(model_dir: Path, name: str, rejected: dict[str, str]) -> list[int]:
    valid = []
    for version in _versions_with(model_dir):
        problem = onnx_problem(model_dir / str(version) / ONNX_FILE)
        if problem is None:
            valid.append(version)
        else:
            rejected[f"{name}/{version}"] = problem
    return valid


def _fill_version(source: Path, folder: Path) -> None:
    """Hard links (copies across filesystems), not symlinks: when `prodgen rollback` moves a
    version folder aside, the mirror's loaded copy must stay readable until the mirror follows.
    Every file of the version comes along (ONNX external data, a python model's neighbours);
    ONNX models get the ONNX Runtime `model.py`."""
    if (source / ONNX_FILE).is_file() or (source / OPENVINO_FILE).is_file():
        shutil.copyfile(PYTHON_MODEL_SOURCE, folder / "model.py")
    for item in source.iterdir():
        if (folder / item.name).exists():
            continue
        if item.is_dir():
            shutil.copytree(item, folder / item.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(item), str(folder / item.name))


def _remove_atomically(folder: Path) -> None:
    """Rename first, then delete: a server scanning the mirror never sees a half-deleted version."""
    hidden = folder.with_name(f".removing-{folder.name}-{os.getpid()}")
    folder.rename(hidden)
    shutil.rmtree(hidden)


def _sync_model(source: Path, target: Path, config_text: str, staging_root: Path, wanted: list[int]) -> bool:
    """Bring one mirrored model up to date; True if anything changed."""
    if not target.exists():
        with staging_dir(staging_root, f".{target.name}-") as staging:
            staged = staging / target.name
            for version in wanted:
                (staged / str(version)).mkdir(parents=True)
                _fill_version(source / str(version), staged / str(version))
            (staged / CONFIG_FILE).write_text(config_text)
            staged.rename(target)
        return True
    changed = False
    for version in wanted:
        if not (target / str(version)).exists():
            with staging_dir(target, ".staging-") as staging:
                _fill_version(source / str(version), staging)
                staging.rename(target / str(version))
            changed = True
    for version in set(versions(target)) - set(wanted):
        _remove_atomically(target / str(version))
        changed = True
    if (target / CONFIG_FILE).read_text() != config_text:
        write_text_atomically(target / CONFIG_FILE, config_text)
        changed = True
    return changed


def sync_mirror(repository: Path, target: Path, intra_op_threads: int = 0) -> MirrorResult:
    """Bring the python-backend mirror at `target` up to date with `repository`."""
    target.mkdir(parents=True, exist_ok=True)
    staging_root = target.parent / f".{target.name}.staging"
    staging_root.mkdir(exist_ok=True)
    served: list[str] = []
    skipped: dict[str, str] = {}
    changed: list[str] = []
    rejected: dict[str, str] = {}

    def serve_through_python(name: str, config: mc.ModelConfig, wanted: list[int]) -> None:
        config_text = to_pbtxt(python_backend_config(config, intra_op_threads, target.parent / DRAIN_MARKER))
        if _sync_model(repository / name, target / name, config_text, staging_root, wanted):
            changed.append(name)
        served.append(name)

    configs: dict[str, mc.ModelConfig] = {}
    for name in model_names(repository):
        problem = name_problem(name)
        if problem is not None:
            skipped[name] = f"name not servable: {problem}"
        else:
            configs[name] = parse_pbtxt((repository / name / CONFIG_FILE).read_text())
    called = _components_named(configs)
    for name, config in configs.items():
        source = repository / name
        if _is_diffusion_component(config) and name not in called and not (target / name).exists():
            # A pipeline switched to other variants (pipeline_components) leaves these unused: each
            # would hold a copy of its weights (SD 1.5's FP32 UNet: 3.4 GB) for nobody. One served
            # before stays: a picture in flight on the pipeline's old version may still call it.
            skipped[name] = "diffusion component no pipeline calls (pipeline_components switches one to it)"
            continue
        if config.platform == "tensorrt_plan":
            skipped[name] = "TensorRT plan (model.plan): needs a GPU Triton with the tensorrt backend"
        elif _is_python_model(config):
            if not _versions_with(source, "model.py"):
                skipped[name] = "no version with model.py"
            else:
                if _sync_model(
                    source, target / name, to_pbtxt(config), staging_root, _versions_with(source, "model.py")
                ):
                    changed.append(name)
                served.append(name)
        elif _is_openvino_model(config):
            if not (wanted := _versions_with(source, OPENVINO_FILE)):
                skipped[name] = f"no version with {OPENVINO_FILE}"
            else:
                serve_through_python(name, config, wanted)
        elif not _is_onnx_model(config):
            skipped[name] = f"backend '{config.backend or config.platform}' needs a GPU Triton"
        elif not _versions_with(source):
            skipped[name] = f"no version with {ONNX_FILE}"
        elif not (wanted := _valid_versions(source, name, rejected)):
            skipped[name] = f"no version with a valid {ONNX_FILE}"
        else:
            serve_through_python(name, config, wanted)
    for stale in set(model_names(target)) - set(served):
        _remove_atomically(target / stale)
    return MirrorResult(served, skipped, changed, rejected)
