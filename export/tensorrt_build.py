"""FP16 ONNX → TensorRT engine (`model.plan`) for Triton's `tensorrt_plan` platform.

TensorRT is imported lazily: it cannot be installed from the registries this project builds
with, so where it is missing the export publishes the FP16 ONNX for the onnxruntime backend
instead and `docker/build_plan.sh` builds the plan in NVIDIA's container on the target GPU.

Precision comes from the ONNX on TensorRT ≥ 10.12 and 11.x (strongly typed network from the
mixed-precision FP16 ONNX). Older 10.x builds parse the FP32 ONNX with the FP16 builder flag
and pin the layers the fidelity gate kept in FP32. That version split lives in one marked
function, `_configure_precision`; everything else is the TensorRT 10 API, checked with mypy
against `tensorrt-stubs` 10.13.

A plan only runs with the TensorRT version and GPU it was built with, so each plan has a
record (`tensorrt-plan.json`) that `check_plan_compatible` reads before loading it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prodgen.errors import ProdgenError
from prodgen.model_repository.publish import PLAN_FILE
from prodgen.tensorrt_defaults import DEFAULT_WORKSPACE_BYTES
from prodgen.zoo.spec import ZooModel

if TYPE_CHECKING:
    import tensorrt as trt

INSTALL_HINT = (
    "tensorrt not importable here: install NVIDIA's TensorRT Python package on a CUDA machine "
    "(pip install tensorrt --extra-index-url https://pypi.nvidia.com) or build the plan with docker/build_plan.sh"
)
PLAN_RECORD_FILE = "tensorrt-plan.json"
TIMING_CACHE_FILE = "prodgen-tensorrt.timing-cache"
DEFAULT_OPTIMIZATION_LEVEL = 3
STRONGLY_TYPED_SINCE = (10, 12)

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ProfileShapes:
    """min/opt/max shape of one input, batch first, as TensorRT's optimization profile wants."""

    name: str
    min: Shape
    opt: Shape
    max: Shape


@dataclass(frozen=True)
class PlanRecord:
    """Where a plan was built; a plan runs only under the same TensorRT and GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    strongly_typed: bool
    profiles: list[dict[str, Any]]


def profile_shapes(model: ZooModel, max_batch: int) -> list[ProfileShapes]:
    """One profile entry per input: batch 1..max_batch; image sides from the model's bounds; other dims fixed."""
    opt_batch = max(1, (max_batch + 1) // 2)
    shapes = []
    for spec in model.inputs:
        low: list[int] = []
        opt: list[int] = []
        high: list[int] = []
        for size in spec.dims:
            if size < 0 and model.bounds is None:
                raise ProdgenError(
                    f"{model.name}: input '{spec.name}' has a dynamic dimension but the model declares no image bounds"
                )
            bounds = (
                (size, size, size)
                if size >= 0 or model.bounds is None
                else (model.bounds.min_side, model.bounds.opt_side, model.bounds.max_side)
            )
            low.append(bounds[0])
            opt.append(bounds[1])
            high.append(bounds[2])
        shapes.append(ProfileShapes(spec.name, (1, *low), (opt_batch, *opt), (max_batch, *high)))
    return shapes


def trtexec_shape_arguments(shapes: Iterable[ProfileShapes]) -> list[str]:
    """`--minShapes/--optShapes/--maxShapes` for trtexec, e.g. `input_image:1x64x64x3`."""
    shapes = list(shapes)

    def joined(pick: str) -> str:
        return ",".join(f"{s.name}:{'x'.join(str(d) for d in getattr(s, pick))}" for s in shapes)

    return [f"--minShapes={joined('min')}", f"--optShapes={joined('opt')}", f"--maxShapes={joined('max')}"]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def uses_strong_typing(tensorrt_version: str) -> bool:
    """TensorRT ≥ 10.12 (and every 11.x) takes the precision from the ONNX."""
    return _version_tuple(tensorrt_version)[:2] >= STRONGLY_TYPED_SINCE


def import_tensorrt() -> Any:
    """The real TensorRT module. `tensorrt-stubs` alone installs an importable but empty
    `tensorrt` namespace package, which counts as missing."""
    try:
        import tensorrt
    except ImportError:
        raise ProdgenError(INSTALL_HINT) from None
    if not hasattr(tensorrt, "Builder"):
        raise ProdgenError(INSTALL_HINT + " (only the tensorrt-stubs type stubs are installed)")
    return tensorrt


def tensorrt_available() -> bool:
    try:
        import_tensorrt()
    except ProdgenError:
        return False
    return True


def current_gpu() -> tuple[str, str]:
    """(GPU name, compute capability) of CUDA device 0."""
    import torch

    if not torch.cuda.is_available():
        raise ProdgenError("TensorRT needs a CUDA GPU and this machine has none (torch.cuda.is_available() is False)")
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


# ── The TensorRT 10.x / 11.x split: everything that differs between them is here. ──
def _configure_precision(
    builder: trt.Builder, config: trt.IBuilderConfig, strongly_typed: bool
) -> tuple[trt.INetworkDefinition, Callable[[set[str]], None]]:
    """The network to parse into, and a callback to run after parsing.

    - TensorRT ≥ 10.12 and 11.x: a strongly typed network; the FP16 ONNX carries every type.
      11.x has no `STRONGLY_TYPED` creation flag any more (every network is strongly typed)
      and no `BuilderFlag.FP16`, hence `getattr` here: the 10.13 stubs cannot check 11.x names.
    - TensorRT < 10.12: weak typing. The FP32 ONNX is parsed, FP16 kernels are allowed with
      `BuilderFlag.FP16`, and the layers kept in FP32 by the fidelity gate are pinned with
      `layer.precision`/`set_output_type` under `OBEY_PRECISION_CONSTRAINTS`.
    """
    import tensorrt as trt_module

    if strongly_typed:
        flag = getattr(trt_module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # gone in 11.x
        network = builder.create_network(0 if flag is None else 1 << int(flag))
        return network, lambda _keep: None
    network = builder.create_network(0)

    def pin(keep_fp32: set[str]) -> None:
        config.set_flag(trt_module.BuilderFlag.FP16)  # 10.x only: 11.x has no FP16 flag
        config.set_flag(trt_module.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if any(layer.name == name or layer.name.startswith(f"{name}_") for name in keep_fp32):
                layer.precision = trt_module.float32
                for output in range(layer.num_outputs):
                    layer.set_output_type(output, trt_module.float32)

    return network, pin


# ── end of the version split ──


def _parse(network: trt.INetworkDefinition, logger: trt.ILogger, onnx_path: Path) -> trt.OnnxParser:
    import tensorrt as trt_module

    parser = trt_module.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise ProdgenError(f"TensorRT could not parse {onnx_path}: {errors}")
    return parser


def build_plan(
    fp16_onnx: Path,
    fp32_onnx: Path,
    model: ZooModel,
    max_batch: int,
    keep_fp32: Iterable[str],
    plan_path: Path,
    timing_cache: Path,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
) -> PlanRecord:
    """Build `plan_path` on this machine's GPU and return the record to publish beside it."""
    import_tensorrt()
    import tensorrt as trt_module

    gpu_name, capability = current_gpu()
    version = str(trt_module.__version__)
    strongly_typed = uses_strong_typing(version)
    logger = trt_module.Logger(trt_module.Logger.WARNING)
    builder = trt_module.Builder(logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt_module.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.builder_optimization_level = optimization_level
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    network, after_parse = _configure_precision(builder, config, strongly_typed)
    _parse(network, logger, fp16_onnx if strongly_typed else fp32_onnx)
    after_parse(set(keep_fp32))
    shapes = profile_shapes(model, max_batch)
    profile = builder.create_optimization_profile()
    for entry in shapes:
        dims = [trt_module.Dims(list(shape)) for shape in (entry.min, entry.opt, entry.max)]
        profile.set_shape(entry.name, *dims)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ProdgenError(f"TensorRT could not build an engine from {fp16_onnx} (see the TensorRT log above)")
    plan_path.write_bytes(bytes(memoryview(serialized)))
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return PlanRecord(version, gpu_name, capability, strongly_typed, [asdict(entry) for entry in shapes])


def write_plan_record(record: PlanRecord, folder: Path) -> None:
    (folder / PLAN_RECORD_FILE).write_text(json.dumps(asdict(record), indent=2) + "\n")


def read_plan_record(folder: Path) -> PlanRecord:
    path = folder / PLAN_RECORD_FILE
    if not path.is_file():
        raise ProdgenError(f"{folder}: no {PLAN_RECORD_FILE}; cannot tell which TensorRT and GPU built this plan")
    return PlanRecord(**json.loads(path.read_text()))


def check_plan_compatible(record: PlanRecord, tensorrt_version: str, gpu_name: str, compute_capability: str) -> None:
    """Refuse a plan built by another TensorRT version or for another GPU, in one line."""
    if record.tensorrt_version != tensorrt_version:
        raise ProdgenError(
            f"plan built with TensorRT {record.tensorrt_version}, this machine has {tensorrt_version}; "
            "rebuild it here (docker/build_plan.sh) with the TensorRT the server runs"
        )
    if record.compute_capability != compute_capability or record.gpu_name != gpu_name:
        raise ProdgenError(
            f"plan built for {record.gpu_name} (compute capability {record.compute_capability}), "
            f"this machine has {gpu_name} ({compute_capability}); rebuild it on the serving GPU"
        )


def load_plan(folder: Path) -> trt.ICudaEngine:
    """Deserialize `folder/model.plan` after checking its record against this machine."""
    import_tensorrt()
    import tensorrt as trt_module

    record = read_plan_record(folder)
    check_plan_compatible(record, str(trt_module.__version__), *current_gpu())
    runtime = trt_module.Runtime(trt_module.Logger(trt_module.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine((folder / PLAN_FILE).read_bytes())
    if engine is None:
        raise ProdgenError(f"TensorRT could not deserialize {folder / PLAN_FILE}")
    return engine
