"""`ProdgenClient(..., shared_memory=True)` against the real embedded server: the same pictures
as plain gRPC, regions registered while in use and gone from the server after close or a failure."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from prodgen.bench.payloads import request_payloads
from prodgen.bench.transfer import TransferSettings, measure_transfer
from prodgen.client import ProdgenClient
from prodgen.client.shared_memory import SharedMemoryRegions
from prodgen.errors import ProdgenError
from prodgen.photos import fit, photograph
from prodgen.serve.server import EmbeddedServer
from tests_support import console_script

pytestmark = pytest.mark.e2e


def registered(url: str) -> list[str]:
    with grpcclient.InferenceServerClient(url) as client:
        return [region.name for region in client.get_system_shared_memory_status().regions.values()]


def test_pictures_through_shared_memory_are_the_plain_grpc_ones(embedded_server: EmbeddedServer) -> None:
    url = embedded_server.options.grpc_url
    photo = fit(photograph("chelsea"), 96, 80)
    with ProdgenClient(url) as plain:
        styled = plain.stylize("fast-neural-style", photo)
        generated = plain.generate("dcgan", seed=3, count=6)  # two requests at max batch 4
    with ProdgenClient(url, shared_memory=True) as shared:
        assert shared.shared_memory_regions == []
        assert np.array_equal(shared.stylize("fast-neural-style", photo), styled)
        assert styled.flags.writeable and shared.stylize("fast-neural-style", photo).flags.writeable  # callers own them
        in_use = shared.shared_memory_regions
        assert len(in_use) == 2 and set(in_use) <= set(registered(url))
        assert np.array_equal(shared.generate("dcgan", seed=3, count=6), generated)
        bigger = fit(photograph("astronaut"), 160, 160)  # needs larger regions: replaced, not added
        with ProdgenClient(url) as plain:
            assert np.array_equal(
                shared.stylize("fast-neural-style", bigger), plain.stylize("fast-neural-style", bigger)
            )
        assert len(shared.shared_memory_regions) == 2 and not set(in_use) & set(shared.shared_memory_regions)
        last = shared.shared_memory_regions
    assert not set(last) & set(registered(url))
    assert not [name for name in Path("/dev/shm").iterdir() if name.name in last]


def test_a_failed_request_leaves_no_region_behind(embedded_server: EmbeddedServer) -> None:
    url = embedded_server.options.grpc_url
    with ProdgenClient(url) as client:
        model = client.model("fast-neural-style")
    image = fit(photograph("coffee"), 64, 64)[np.newaxis]
    with grpcclient.InferenceServerClient(url) as raw:
        regions = SharedMemoryRegions(raw, url)
        output = [(spec, (1, 80, 80, 3)) for spec in model.outputs]
        with pytest.raises(InferenceServerException):
            regions.infer("no-such-model", model.inputs, {"input_image": image}, output, client_timeout=30)
        assert regions.names == []
    assert not [name for name in registered(url) if name.startswith("prodgen-")]


@pytest.mark.parametrize("url", ["10.1.2.3:8001", "example.invalid:8001"])
def test_a_server_on_another_host_is_refused(url: str) -> None:
    with pytest.raises(ProdgenError, match="loopback"):
        ProdgenClient(url, shared_memory=True)


def test_a_fleet_is_refused() -> None:
    with pytest.raises(ProdgenError, match="not with a fleet"):
        ProdgenClient(urls=["localhost:1", "localhost:2"], shared_memory=True)


def test_stylize_cli_takes_shared_memory(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    photo = Path(__file__).parents[2] / "examples" / "photos" / "coffee.jpg"
    done = subprocess.run(
        [console_script("prodgen"), "stylize", "fast-neural-style", str(photo), "--out", str(tmp_path),
         "--url", embedded_server.options.grpc_url, "--shared-memory"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "coffee.png").size == Image.open(photo).size


def test_transfer_bench_pairs_the_two_ways_and_splits_off_the_model(embedded_server: EmbeddedServer) -> None:
    url = embedded_server.options.grpc_url
    with ProdgenClient(url) as client:
        (payload,) = request_payloads(client.model("fast-neural-style"), 1, 64, variants=1)
    comparison = measure_transfer(url, "fast-neural-style", payload, TransferSettings(pairs=3, pause_s=0.0))
    assert comparison.identical and comparison.pairs == 3
    assert comparison.input_bytes == comparison.output_bytes == 64 * 64 * 3
    for mode in comparison.modes:
        assert len(mode.latencies_ms) == len(mode.outside_model_ms) == 3
        assert all(
            0 < outside < latency for outside, latency in zip(mode.outside_model_ms, mode.latencies_ms, strict=True)
        )
    assert comparison.saved_outside_model_ms is not None
    assert comparison.saved_ms.low <= comparison.saved_ms.estimate <= comparison.saved_ms.high
    assert not [name for name in registered(url) if name.startswith("prodgen-")]
