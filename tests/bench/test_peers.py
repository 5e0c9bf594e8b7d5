"""`prodgen-bench peers` end to end: prodgen and a peer as real servers on free loopback ports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the peers extra is not installed: pip install 'prodgen[peers]'")
pytest.importorskip("uvicorn", reason="the peers extra is not installed: pip install 'prodgen[peers]'")

from prodgen.bench.events import Silent  # noqa: E402 - after the skip, as the peers need their extra
from prodgen.bench.load import Endpoint  # noqa: E402
from prodgen.bench.machine import describe_machine  # noqa: E402
from prodgen.bench.payloads import request_payloads  # noqa: E402
from prodgen.bench.peers.compare import check_peers, export_for_peers, run_peers, start_all, stop_all  # noqa: E402
from prodgen.bench.peers.launch import PEERS, PRODGEN, start_server, wait_ready  # noqa: E402
from prodgen.bench.peers.settings import PeerSettings  # noqa: E402
from prodgen.bench.report import BenchReport, write_report  # noqa: E402
from prodgen.client import ProdgenClient  # noqa: E402
from prodgen.errors import ProdgenError  # noqa: E402

pytestmark = pytest.mark.e2e

SHORT = PeerSettings(
    peers=("fastapi-onnxruntime",),
    concurrency=(2,),
    rounds=1,
    warmup_s=0.3,
    window_s=0.5,
    min_window_requests=3,
    timeout_s=60.0,
)


def test_prodgen_against_fastapi_onnxruntime_report(tmp_path: Path) -> None:
    result = run_peers("dcgan", SHORT, workdir=tmp_path / "work")

    assert list(result.targets) == ["prodgen", "fastapi-onnxruntime"]
    (check,) = result.checks
    assert check.accepted and check.max_abs_diff is not None and check.max_abs_diff <= 1
    assert [(level.target, level.concurrency) for level in result.levels] == [
        ("prodgen", 2),
        ("fastapi-onnxruntime", 2),
    ]
    for level in result.levels:
        assert level.errors == 0, level.error_messages
        assert level.completed > 0 and level.latency is not None and level.images_per_s > 0
        assert len(level.windows) == SHORT.rounds
        assert level.rss_peak_mb is not None and level.rss_peak_mb > 0
    prodgen = result.level("prodgen", 2)
    assert prodgen is not None and prodgen.windows[0].average_batch is not None  # Triton's own statistics were read

    report = BenchReport(command="prodgen-bench peers dcgan", machine=describe_machine(), peers=[result])
    written = {path.name for path in write_report(report, tmp_path / "report")}
    assert {"report.json", "report.md", "peers-dcgan.png"} <= written
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    (peers,) = data["peers"]
    assert {level["target"] for level in peers["levels"]} == {"prodgen", "fastapi-onnxruntime"}
    assert all(level["latencies_ms"] for level in peers["levels"])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| 2 | fastapi-onnxruntime |" in markdown and "Goal at c=2" in markdown
    assert "prodgen-bench peers dcgan" in markdown


def test_a_peer_with_other_pictures_is_refused(tmp_path: Path) -> None:
    source = export_for_peers("dcgan", tmp_path / "work", [], SHORT)
    prodgen, *_ = servers = start_all([PRODGEN], source, tmp_path / "logs", observer=Silent())
    other_weights = dataclasses.replace(source, seed=source.seed + 1)  # the same network, other weights
    servers.append(start_server(PEERS["fastapi-torch"], other_weights, tmp_path / "logs"))
    try:
        wait_ready(servers[1], source.served_name)
        with ProdgenClient(prodgen.url) as client:
            served = client.model(source.served_name)
        endpoint = Endpoint(prodgen.url, source.served_name, served.inputs, served.outputs, 60.0)
        (check,) = check_peers(servers, endpoint, request_payloads(served, 1, None), limit=1)
    finally:
        stop_all(servers)
    assert check.target == "fastapi-torch"
    assert not check.accepted
    assert check.max_abs_diff is not None and check.max_abs_diff > 1
    assert "beyond 1" in check.detail


def test_a_variant_export_does_not_publish_is_named_not_measured(tmp_path: Path) -> None:
    # DCGAN has no Conv, MatMul or Gemm layer to quantise, so export publishes no dcgan_int8.
    with pytest.raises(ProdgenError, match=r"dcgan_int8 was not published: export keeps a variant only inside"):
        export_for_peers("dcgan", tmp_path / "work", [], dataclasses.replace(SHORT, variant="int8"))
    with pytest.raises(ProdgenError, match=r"unknown variant 'fp8'; choose from int8, openvino, int8_openvino"):
        dataclasses.replace(SHORT, variant="fp8")
