"""TensorRT build: shapes from the model's bounds, plan refusal, and the API checked by mypy."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prodgen import zoo
from prodgen.errors import ProdgenError
from prodgen.export import tensorrt_build
from prodgen.export.tensorrt_build import (
    PlanRecord,
    check_plan_compatible,
    profile_shapes,
    read_plan_record,
    trtexec_shape_arguments,
    uses_strong_typing,
    write_plan_record,
)
from scripts.tensorrt_stubs import write_parseable_stubs

ROOT = Path(__file__).resolve().parents[2]


def test_profiles_come_from_max_batch_and_image_bounds() -> None:
    model = zoo.get("cyclegan")
    (shapes,) = profile_shapes(model, max_batch=8)
    bounds = model.bounds
    assert bounds is not None
    assert shapes.min == (1, bounds.min_side, bounds.min_side, 3)
    assert shapes.opt == (4, bounds.opt_side, bounds.opt_side, 3)
    assert shapes.max == (8, bounds.max_side, bounds.max_side, 3)
    z, class_id = profile_shapes(zoo.get("conditional-dcgan"), max_batch=4)
    assert (z.min, z.max) == ((1, 100), (4, 100)) and class_id.max == (4, 1)
    assert trtexec_shape_arguments([z, class_id])[2] == "--maxShapes=z:4x100,class_id:4x1"


def test_strong_typing_from_10_12_and_in_11() -> None:
    assert not uses_strong_typing("10.11.0.33")
    assert uses_strong_typing("10.12.0.36") and uses_strong_typing("10.13.0.35") and uses_strong_typing("11.0.0.1")


def _record(tmp_path: Path) -> PlanRecord:
    record = PlanRecord("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", True, [])
    write_plan_record(record, tmp_path)
    return read_plan_record(tmp_path)


def test_a_plan_from_another_gpu_or_tensorrt_is_refused(tmp_path: Path) -> None:
    record = _record(tmp_path)
    check_plan_compatible(record, "10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
    with pytest.raises(ProdgenError, match="built for NVIDIA H100 .* this machine has NVIDIA L4"):
        check_plan_compatible(record, "10.13.0.35", "NVIDIA L4", "8.9")
    with pytest.raises(ProdgenError, match="TensorRT 10.13.0.35, this machine has 11.0.0"):
        check_plan_compatible(record, "11.0.0", "NVIDIA H100 80GB HBM3", "9.0")
    with pytest.raises(ProdgenError, match="no tensorrt-plan.json"):
        read_plan_record(tmp_path / "missing")


def test_without_tensorrt_the_error_says_what_to_install() -> None:
    if tensorrt_build.tensorrt_available():
        pytest.skip("tensorrt is importable here")
    with pytest.raises(ProdgenError, match="pip install tensorrt"):
        tensorrt_build.import_tensorrt()


def _stub_path(tmp_path: Path) -> Path | None:
    """A parseable copy of the installed tensorrt-stubs for MYPYPATH, None if not installed."""
    return write_parseable_stubs(tmp_path / "stubs")


def _mypy_errors(paths: list[Path], stubs: Path) -> list[str]:
    """mypy's errors in `paths` (the copied stubs have their own, which are not ours to fix)."""
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports", "--no-incremental",
         "--cache-dir", str(stubs.parent / "mypy-cache"), *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "MYPYPATH": str(stubs)},
    )  # fmt: skip
    return [line for line in run.stdout.splitlines() if line.startswith(tuple(map(str, paths))) and ": error:" in line]


def test_tensorrt_build_module_type_checks_against_tensorrt_stubs(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    stubs = _stub_path(tmp_path)
    if stubs is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    module = Path("export", "tensorrt_build.py")
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "import tensorrt as trt\n"
        "config = trt.Builder(trt.Logger()).create_builder_config()\n"
        "config.set_memory_pool_limt(trt.MemoryPoolType.WORKSPACE, 1)\n"
    )
    errors = _mypy_errors([module, wrong], stubs)
    assert [line for line in errors if line.startswith(str(module))] == []
    (caught,) = [line for line in errors if line.startswith(str(wrong))]
    assert "set_memory_pool_limt" in caught  # the stubs really check TensorRT names


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_builds_a_plan_from_the_fp16_onnx(tmp_path: Path) -> None:
    if not tensorrt_build.tensorrt_available():
        pytest.skip(tensorrt_build.INSTALL_HINT)
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    from prodgen.export.fp16_graph import convert_to_fp16
    from prodgen.export.onnx_export import export_onnx
    from prodgen.zoo.loading import serving_module
    from prodgen.zoo.samples import sample_inputs

    model = zoo.get("srvgg-x2-small")
    fp32 = tmp_path / "model.onnx"
    export_onnx(serving_module(model), model, sample_inputs(model, batch=1, height=32), fp32)
    import onnx

    fp16 = tmp_path / "model_fp16.onnx"
    onnx.save(convert_to_fp16(onnx.load(str(fp32))).model, str(fp16))
    record = tensorrt_build.build_plan(fp16, fp32, model, 2, (), tmp_path / "model.plan", tmp_path / "cache")
    assert (tmp_path / "model.plan").stat().st_size > 0 and (tmp_path / "cache").is_file()
    write_plan_record(record, tmp_path)
    assert tensorrt_build.load_plan(tmp_path) is not None
