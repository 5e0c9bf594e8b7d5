"""Served mode against the real embedded Triton server over gRPC (short levels)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from prodgen.bench.direct import DirectSettings, latest_repository_onnx
from prodgen.bench.load import Endpoint
from prodgen.bench.machine import describe_machine
from prodgen.bench.overhead import PairSettings, measure_paired_overhead
from prodgen.bench.payloads import request_payloads
from prodgen.bench.reference import measure_reference
from prodgen.bench.report import BenchReport, write_report
from prodgen.bench.served import LoadLevel, ServedSettings, run_served
from prodgen.client import ProdgenClient
from prodgen.serve.server import EmbeddedServer
from tests_support import console_script

pytestmark = pytest.mark.e2e

SHORT = ServedSettings(
    concurrency=(1, 2),
    rates=(40.0,),
    arrival="poisson",
    warmup_s=0.3,
    window_s=0.4,
    min_window_requests=3,
    max_window_s=3.0,
    max_windows=4,
    timeout_s=30.0,
    max_requests=2000,
)


def assert_accounted(level: LoadLevel) -> None:
    assert level.sent > 0
    assert level.completed + level.errors == level.sent
    assert len(level.samples) == level.sent
    assert level.measured_completed + level.measured_errors <= level.completed + level.errors


def test_sweep_and_rate_against_the_embedded_server(
    embedded_server: EmbeddedServer, exported_repository: Path, tmp_path: Path
) -> None:
    url = embedded_server.options.grpc_url
    result = run_served(url, "dcgan", SHORT)
    assert [level.label for level in result.levels] == ["c=1", "c=2", "40/s poisson"]
    for level in result.levels:
        assert_accounted(level)
        assert level.errors == 0, level.error_messages
        assert level.windows and level.used_windows >= 1
        assert level.latency is not None and level.latency.p50_ms <= level.latency.p99_ms
        assert level.server is not None and level.server.requests > 0
        assert (
            level.split is not None and level.split.server_ms is not None and level.split.compute_infer_ms is not None
        )
    assert result.levels[2].late_fraction is not None
    assert result.inputs == {"z": [1, 100]}

    with ProdgenClient(url) as client:
        served_model = client.model("dcgan")
    result.reference = measure_reference(
        latest_repository_onnx(exported_repository, "dcgan"),
        served_model,
        1,
        None,
        DirectSettings(warmup=1, min_runs=3, min_seconds=0.0),
    )
    assert [p.batch for p in result.reference.points] == [1, 4]  # the request batch and the server's max batch

    report = BenchReport(command="test", machine=describe_machine(), served=[result], check_targets=True)
    written = write_report(report, tmp_path)
    assert {"report.json", "report.md", "served-dcgan.png"} <= {p.name for p in written}
    data = json.loads((tmp_path / "report.json").read_text())
    (served,) = data["served"]
    for level in served["levels"]:
        assert level["completed"] + level["errors"] == level["sent"] == len(level["samples"])
        parts = {
            "client_ms",
            "server_ms",
            "queue_ms",
            "compute_input_ms",
            "compute_infer_ms",
            "compute_output_ms",
            "client_and_network_ms",
        }
        assert parts <= set(level["split"])
    verdicts = {t["target"]: t for t in data["targets"]}
    assert verdicts["served c8 ≥90% of direct"]["verdict"] == "not measured"  # no concurrency-8 level in this short run
    assert verdicts["server adds ≤1.5 ms p50"]["measured"] is not None
    assert "| c=1 | " in (tmp_path / "report.md").read_text()


def test_paired_overhead_times_every_pair_and_the_server_saw_exactly_those_requests(
    embedded_server: EmbeddedServer, exported_repository: Path
) -> None:
    url = embedded_server.options.grpc_url
    with ProdgenClient(url) as client:
        served_model = client.model("fast-neural-style")
    endpoint = Endpoint(url, "fast-neural-style", served_model.inputs, served_model.outputs, 30.0)
    (payload,) = request_payloads(served_model, 1, 64, variants=1)
    onnx_path = latest_repository_onnx(exported_repository, "fast-neural-style")
    overhead = measure_paired_overhead(
        endpoint, onnx_path, payload, PairSettings(min_pairs=6, min_seconds=0.0, warmup_pairs=1)
    )
    assert overhead.pairs == 6 == overhead.served.count == overhead.direct.count == len(overhead.differences_ms)
    assert (
        overhead.empty_call is not None and overhead.empty_call.count == 6
    )  # ServerLive: not in the model's statistics
    assert (
        overhead.server is not None and overhead.server.requests == 6
    )  # warm-up pairs fall outside the statistics window
    assert overhead.client_and_network_ms is not None and overhead.backend_over_direct_ms is not None
    assert (
        min(overhead.differences_ms) <= overhead.added_p50_ms <= overhead.added_p90_ms <= max(overhead.differences_ms)
    )


def test_image_payloads_are_real_photos_shaped_by_the_served_config(embedded_server: EmbeddedServer) -> None:
    with ProdgenClient(embedded_server.options.grpc_url) as client:
        served_model = client.model("fast-neural-style")
    payloads = request_payloads(served_model, batch=2, side=64)
    assert len(payloads) == 4
    for payload in payloads:
        image = payload["input_image"]
        assert image.dtype == np.uint8 and image.shape == (2, 64, 64, 3)
        assert image.std() > 20  # photographs, not zeros or a flat colour
    assert not np.array_equal(payloads[0]["input_image"], payloads[1]["input_image"])

    settings = ServedSettings(
        concurrency=(2,),
        request_batch=2,
        size=64,
        warmup_s=0.2,
        window_s=0.3,
        min_window_requests=2,
        max_windows=2,
        max_requests=200,
    )
    result = run_served(embedded_server.options.grpc_url, "fast-neural-style", settings)
    (level,) = result.levels
    assert_accounted(level)
    assert level.errors == 0
    assert result.inputs == {"input_image": [2, 64, 64, 3]}
    assert level.images_per_s == pytest.approx(2 * level.throughput_rps)


def test_failed_requests_are_counted_as_errors(embedded_server: EmbeddedServer) -> None:
    settings = ServedSettings(
        concurrency=(1,),
        size=256,
        warmup_s=0.1,
        window_s=0.2,
        max_window_s=0.5,
        max_windows=2,
        timeout_s=0.001,
        max_requests=15,
    )
    result = run_served(embedded_server.options.grpc_url, "fast-neural-style", settings)
    (level,) = result.levels
    assert_accounted(level)
    assert level.errors > 0 and level.completed + level.errors == level.sent <= 15
    assert any("DEADLINE" in message.upper() for message in level.error_messages)
    assert not level.stable


def test_cli_served_with_a_rate_level_and_a_direct_reference(
    embedded_server: EmbeddedServer, exported_repository: Path, tmp_path: Path
) -> None:
    out = tmp_path / "served"
    done = subprocess.run(
        [
            console_script("prodgen-bench"), "served", "dcgan", "--url", embedded_server.options.grpc_url, "--concurrency", "2",
            "--rate", "30", "--arrival", "poisson", "--warmup", "0.2", "--window", "0.3", "--max-windows", "3",
            "--repository", str(exported_repository), "--pairs", "4", "--ceiling-seconds", "0.05", "--targets", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "report.json").read_text())
    (served,) = data["served"]
    assert [level["mode"] for level in served["levels"]] == ["concurrency", "rate"]
    for level in served["levels"]:
        assert level["completed"] + level["errors"] == level["sent"] == len(level["samples"]) > 0
    assert [point["batch"] for point in served["reference"]["points"]] == [1, 4]
    assert served["overhead"]["pairs"] >= 4
    (overhead_target,) = [t for t in data["targets"] if t["target"] == "server adds ≤1.5 ms p50"]
    assert overhead_target["measured"] == served["overhead"]["added_p50_ms"]
    assert "interleaved" in overhead_target["detail"]
    assert "c=2" in done.stdout and "30/s poisson" in done.stdout


def test_cli_served_names_an_unknown_model_in_one_line(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    done = subprocess.run(
        [console_script("prodgen-bench"), "served", "no-such-model", "--url", embedded_server.options.grpc_url, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "model 'no-such-model' is not served" in done.stderr and "Traceback" not in done.stderr
