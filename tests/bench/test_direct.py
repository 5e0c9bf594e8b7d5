"""Direct mode on a real (small) zoo model through real PyTorch and ONNX Runtime."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prodgen import zoo
from prodgen.bench.ceiling import measure_ceilings
from prodgen.bench.direct import DirectSettings, run_direct
from prodgen.bench.machine import describe_machine
from prodgen.bench.report import BenchReport, write_report
from prodgen.bench.runtime import RuntimeUnavailable
from prodgen.bench.tensorrt_runtime import load_tensorrt

QUICK = DirectSettings(
    batches=(1, 2),
    runtimes=("torch-eager", "torch-best", "onnxruntime", "tensorrt"),
    warmup=1,
    min_runs=2,
    min_seconds=0.0,
    max_seconds=5.0,
    compile=False,
    device="cpu",
)

# DCGAN's five ConvTranspose layers, 2 FLOPs per multiply-add: |input| × out channels × 4×4 taps
DCGAN_DENSE_FLOPS = 2 * (100 * 512 * 16 + 3 * (8192 * 4096) + 65536 * 48)


def test_dcgan_through_every_runtime_with_a_report(tmp_path: Path) -> None:
    ceilings = measure_ceilings("start", seconds=0.1)
    result = run_direct(zoo.get("dcgan"), QUICK, ceilings)
    measured = {(m.runtime, m.batch) for m in result.measurements}
    assert {(r, b) for r in ("torch-eager", "torch-best", "onnxruntime") for b in (1, 2)} <= measured
    try:
        load_tensorrt()
    except RuntimeUnavailable:
        (skipped,) = result.skipped
        assert skipped.runtime == "tensorrt" and "install" in skipped.reason
    assert result.flops["native"].dense == DCGAN_DENSE_FLOPS
    for m in result.measurements:
        assert m.latency.count == len(m.latencies_ms) >= QUICK.min_runs
        assert m.latency.p50_ms <= m.latency.p90_ms <= m.latency.p95_ms <= m.latency.p99_ms <= m.latency.max_ms
        assert m.images_per_s > 0 and m.achieved_gflops > 0
        assert m.ceiling is not None and m.ceiling.startswith("cpu-float32") and m.ceiling_fraction is not None
        if m.runtime == "torch-eager":
            assert m.agreement_within_one_level is None  # it is the reference
        else:
            assert m.agreement_within_one_level is not None and m.agreement_within_one_level >= 0.999
    best = next(m for m in result.measurements if m.runtime == "torch-best")
    assert best.settings["memory_format"] in ("contiguous", "channels_last") and best.settings["compile"] == "off"

    report = BenchReport(
        command="test", machine=describe_machine(), ceilings=ceilings, direct=[result], check_targets=True
    )
    written = write_report(report, tmp_path)
    names = {path.name for path in written}
    assert {"report.json", "report.md", "direct-dcgan.png"} <= names
    data = json.loads((tmp_path / "report.json").read_text())
    (direct,) = data["direct"]
    assert len(direct["measurements"]) == len(result.measurements)
    assert all(len(m["latencies_ms"]) == m["latency"]["count"] for m in direct["measurements"])
    verdicts = {t["target"]: t["verdict"] for t in data["targets"]}
    assert verdicts["ort≥1.5×eager@b4"] == "not measured"  # batch 4 was not run
    assert verdicts["≥70% of GEMM ceiling"] in ("met", "missed")  # DCGAN is conv-heavy: all but 0.2 % is ConvTranspose
    markdown = (tmp_path / "report.md").read_text()
    assert "| onnxruntime | fp32 | 2 | native |" in markdown


# Direct mode must run where tritonclient is not installed (a GPU box with only torch and
# onnxruntime): the CLI runs with every tritonclient import failing.
WITHOUT_TRITONCLIENT = "import sys; sys.modules['tritonclient'] = None; from prodgen.bench.cli import main; main()"


WITH_TRITONCLIENT = "from prodgen.bench.cli import main; main()"


@pytest.mark.gpu
def test_cuda_runs_eager_in_fp32_and_best_in_fp16_with_gpu_memory(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    ceilings = measure_ceilings("start", seconds=0.2)
    assert {c.key for c in ceilings} >= {"cpu-float32", "cuda-float32", "cuda-float16"}
    settings = DirectSettings(
        batches=(2,),
        runtimes=("torch-eager", "torch-best", "onnxruntime"),
        warmup=1,
        min_runs=3,
        min_seconds=0.0,
        device="cuda",
    )
    result = run_direct(zoo.get("fast-neural-style"), dataclasses.replace(settings, sizes=(64,)), ceilings)
    by_runtime = {m.runtime: m for m in result.measurements}
    eager, best, ort = by_runtime["torch-eager"], by_runtime["torch-best"], by_runtime["onnxruntime"]
    assert (eager.device, eager.precision, eager.ceiling) == ("cuda", "fp32", "cuda-float32 (torch)")
    assert (best.device, best.precision, best.ceiling) == ("cuda", "fp16-autocast", "cuda-float16 (torch)")
    assert ort.device == ("cuda" if ort.settings["provider"] == "CUDAExecutionProvider" else "cpu")
    assert eager.memory.device_peak_mb is not None and eager.memory.device_peak_mb > 0
    assert best.agreement_within_one_level is not None and best.agreement_within_one_level > 0.9  # FP16 against FP32


def run_cli(*args: str, script: str = WITHOUT_TRITONCLIENT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_direct_writes_a_report_folder(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = run_cli(
        "direct",
        "fast-neural-style",
        "--batch",
        "1",
        "--size",
        "64",
        "--runtimes",
        "torch-eager,onnxruntime",
        "--min-runs",
        "2",
        "--min-seconds",
        "0",
        "--ceiling-seconds",
        "0.1",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "direct" in done.stdout and "onnxruntime" in done.stdout
    data = json.loads((out / "report.json").read_text())
    (direct,) = data["direct"]
    assert {m["runtime"] for m in direct["measurements"]} == {"torch-eager", "onnxruntime"}
    assert {m["height"] for m in direct["measurements"]} == {64}
    assert "targets" not in data and "target" not in done.stdout  # acceptance targets only with --targets
    cpu_fp32 = [(c["when"], c["library"]) for c in data["ceilings"] if (c["device"], c["dtype"]) == ("cpu", "float32")]
    libraries = ["torch", "onnxruntime", "torch oneDNN conv3x3"]
    assert cpu_fp32 == [("start", library) for library in libraries] + [("end", library) for library in libraries]
    assert (out / "direct-fast-neural-style.png").stat().st_size > 0


def test_cli_json_puts_the_report_on_stdout_and_the_table_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = run_cli(
        "direct", "dcgan", "--batch", "1", "--runtimes", "onnxruntime", "--min-runs", "2", "--min-seconds", "0",
        "--ceiling-seconds", "0.05", "--no-plots", "--json", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == json.loads((out / "report.json").read_text())
    assert printed["schema"] == "prodgen-bench/1"
    assert [m["runtime"] for m in printed["direct"][0]["measurements"]] == ["onnxruntime"]
    assert "onnxruntime" in done.stderr and "images/s" in done.stderr  # the table, for a person watching


def test_cli_zoo_writes_into_bench_results_unless_told_otherwise(tmp_path: Path) -> None:
    """The committed baseline (bench/reports/cpu-baseline) is only rewritten when named with --out."""
    done = subprocess.run(
        [sys.executable, "-c", WITH_TRITONCLIENT, "zoo", "--models", "dcgan", "--served", "", "--batch", "1",
         "--runtimes", "onnxruntime", "--min-runs", "2", "--min-seconds", "0", "--ceiling-seconds", "0.05", "--no-plots"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "bench-results").iterdir()
    assert folder.name.startswith("zoo-dcgan-") and (folder / "report.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-results"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["direct", "dcgan", "--runtimes", "torch-eager,warp-drive"], "unknown runtime(s) warp-drive"),
        (["direct", "fast-neural-style", "--size", "4096"], "outside the model's bounds"),
        (["direct", "no-such-model"], "unknown model 'no-such-model'"),
        (["direct", "dcgan", "--batch", "1,x"], "--batch: expected comma-separated numbers"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_cli(*args, "--ceiling-seconds", "0.05", "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.e2e
def test_cli_zoo_baseline_runs_direct_and_served_into_one_report(tmp_path: Path) -> None:
    out = tmp_path / "baseline"
    done = run_cli(
        "zoo",
        "--models",
        "dcgan,srvgg-x2-small",
        "--served",
        "dcgan",
        "--batch",
        "1",
        "--runtimes",
        "torch-eager,onnxruntime",
        "--min-runs",
        "2",
        "--min-seconds",
        "0",
        "--concurrency",
        "1",
        "--window",
        "0.3",
        "--ceiling-seconds",
        "0.05",
        "--out",
        str(out),
        script=WITH_TRITONCLIENT,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "report.json").read_text())
    assert [d["model"] for d in data["direct"]] == ["dcgan", "srvgg-x2-small"]
    assert {m["height"] for m in data["direct"][1]["measurements"]} == {
        256
    }  # the small upscaler runs at its tuned side
    (served,) = data["served"]
    (level,) = served["levels"]
    assert served["model"] == "dcgan" and level["concurrency"] == 1
    assert level["completed"] + level["errors"] == level["sent"] > 0
    assert served["reference"]["points"], "the served model gets a direct ONNX Runtime reference"
    assert any("image sides in direct mode: srvgg-x2-small 256²" in note for note in data["notes"])
    assert {"report.md", "direct-dcgan.png", "served-dcgan.png"} <= {path.name for path in out.iterdir()}
