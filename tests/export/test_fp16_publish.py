"""`prodgen-export --fp16` as a user runs it: what lands in the repository, what the CPU server serves."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from prodgen.export.fidelity import ssim_text
from prodgen.export.tensorrt_build import tensorrt_available
from prodgen.model_repository.config import parse_pbtxt
from prodgen.serve.python_backend_repository import sync_mirror
from tests_support import console_script


@pytest.fixture(scope="module")
def fp16_repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    repository = tmp_path_factory.mktemp("fp16") / "models"
    result = subprocess.run(
        [console_script("prodgen-export"), "dcgan", "--fp16", "--repository", str(repository), "--max-batch", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return repository, result


def _float_initializer_types(path: Path) -> set[int]:
    return {init.data_type for init in onnx.load(str(path)).graph.initializer if init.data_type != TensorProto.INT64}


def test_fp16_publishes_a_gpu_model_beside_the_unchanged_fp32_one(
    fp16_repository: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    repository, result = fp16_repository
    assert _float_initializer_types(repository / "dcgan" / "1" / "model.onnx") == {TensorProto.FLOAT}
    assert TensorProto.FLOAT16 in _float_initializer_types(repository / "dcgan_fp16" / "1" / "model.onnx")
    base = parse_pbtxt((repository / "dcgan" / "config.pbtxt").read_text())
    fp16 = parse_pbtxt((repository / "dcgan_fp16" / "config.pbtxt").read_text())
    assert list(fp16.input) == list(base.input) and list(fp16.output) == list(base.output)
    assert fp16.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "FP16"
    record = json.loads((repository / "dcgan_fp16" / "1" / "prodgen-fp16.json").read_text())
    assert record["fp16"]["published"]["psnr_db"] >= 40 and record["fp16"]["published"]["nonfinite"] == 0
    recipe = json.loads((repository / "dcgan_fp16" / "1" / "tensorrt-build.json").read_text())
    assert recipe["trtexec_shapes"] == ["--minShapes=z:1x100", "--optShapes=z:2x100", "--maxShapes=z:4x100"]
    assert parse_pbtxt(recipe["plan_config_pbtxt"]).platform == "tensorrt_plan"
    assert "FP16 fidelity: PSNR" in result.stdout
    assert 0.99 <= record["fp16"]["published"]["lowest_ssim"] <= 1.0
    assert 0.99 <= record["parity_onnxruntime_vs_pytorch"]["lowest_ssim"] <= 1.0
    printed = " ".join(result.stdout.split())
    for line, recorded in (
        ("parity ONNX Runtime vs PyTorch:", record["parity_onnxruntime_vs_pytorch"]),
        ("FP16 fidelity: PSNR", record["fp16"]["published"]),
    ):
        reported = re.search(f"{line} [^:]*?lowest SSIM ([0-9.]+)", printed)
        assert reported is not None and reported[1] == ssim_text(recorded["lowest_ssim"]), printed
    if not tensorrt_available():
        assert not (repository / "dcgan_trt").exists()
        assert "tensorrt not importable here: published dcgan_fp16" in " ".join(result.stdout.split())


def test_the_cpu_server_mirror_serves_the_fp16_onnx_and_skips_plans(
    fp16_repository: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    repository, _ = fp16_repository
    recipe = json.loads((repository / "dcgan_fp16" / "1" / "tensorrt-build.json").read_text())
    plan_model = repository / recipe["plan_model"]
    if not plan_model.exists():
        (plan_model / "1").mkdir(parents=True)
        (plan_model / "1" / "model.plan").write_bytes(b"plan bytes")
        (plan_model / "config.pbtxt").write_text(recipe["plan_config_pbtxt"])
    mirror = sync_mirror(repository, tmp_path / "mirror")
    assert mirror.served == ["dcgan", "dcgan_fp16"]
    assert "TensorRT plan" in mirror.skipped["dcgan_trt"]
    mirrored = parse_pbtxt((tmp_path / "mirror" / "dcgan_fp16" / "config.pbtxt").read_text())
    assert mirrored.backend == "python" and not mirrored.HasField("optimization")


def test_fp16_onnx_serves_the_same_contract_on_cpu(
    fp16_repository: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    import onnxruntime

    repository, _ = fp16_repository
    z = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    outputs = [
        onnxruntime.InferenceSession(
            str(repository / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        ).run(None, {"z": z})[0]
        for name in ("dcgan", "dcgan_fp16")
    ]
    assert outputs[1].dtype == np.uint8 and outputs[1].shape == outputs[0].shape == (3, 64, 64, 3)
    assert np.abs(outputs[0].astype(int) - outputs[1].astype(int)).max() <= 3


def test_a_model_failing_the_gate_does_not_stop_the_others(tmp_path: Path) -> None:
    """70 dB sits between the two models' seeded-weight PSNRs: dcgan ~83 dB, srvgg-x2-small ~64 dB,
    which its fallback cannot lift that far within a quarter of its layers."""
    repository = tmp_path / "models"
    result = subprocess.run(
        [console_script("prodgen-export"), "srvgg-x2-small", "dcgan", "--fp16", "--min-psnr", "70", "--repository", str(repository)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    *progress, last = result.stderr.strip().splitlines()
    assert last == "Error: 1 of 2 models failed: srvgg-x2-small; the others were published"
    assert all(line.startswith(("srvgg-x2-small: ", "dcgan: ")) for line in progress)  # slow steps, piped
    assert "srvgg-x2-small: FP16 fidelity gate failed" in " ".join(result.stdout.split())
    assert sorted(p.name for p in repository.iterdir()) == ["dcgan", "dcgan_fp16"]
    rows = [line.split("│")[1:4] for line in result.stdout.splitlines() if line.startswith("│")]
    named = {name.strip(): (psnr.strip(), ssim.strip()) for name, psnr, ssim in rows if name.strip()}
    assert list(named) == ["dcgan", "srvgg-x2-small"]
    assert float(named["dcgan"][0]) >= 70 and named["srvgg-x2-small"][0] == "failed"
    assert 0.99 <= float(named["dcgan"][1]) <= 1.0
