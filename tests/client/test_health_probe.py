"""`prodgen health`'s probe reads Triton's answers as tritonclient does, without tritonclient."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from prodgen.client.health_probe import _bool_field, _models_ready, _text_fields, probe_health
from prodgen.errors import ProdgenError
from prodgen.serve.server import EmbeddedServer
from tests_support import free_port


def test_the_wire_reader_decodes_tritons_own_messages() -> None:
    index = service_pb2.RepositoryIndexResponse()
    for name, version, state in (
        ("dcgan", "1", "UNAVAILABLE"),
        ("dcgan", "2", "READY"),
        ("broken", "1", "UNAVAILABLE"),
    ):
        index.models.add(name=name, version=version, state=state, reason="x" * 300)
    assert _models_ready(index.SerializeToString()) == {"dcgan": True, "broken": False}
    metadata = service_pb2.ServerMetadataResponse(name="triton", version="2.51.0", extensions=["a", "b"])
    assert _text_fields(metadata.SerializeToString(), 2) == ["2.51.0"]
    assert _bool_field(service_pb2.ServerLiveResponse(live=True).SerializeToString(), 1)
    assert not _bool_field(service_pb2.ServerReadyResponse(ready=False).SerializeToString(), 1)


def test_a_closed_port_is_one_clear_line() -> None:
    with pytest.raises(ProdgenError, match=r"cannot reach Triton at 127\.0\.0\.1:\d+ \(server live\)"):
        probe_health(f"127.0.0.1:{free_port()}", timeout_s=2.0)


@pytest.mark.e2e
def test_the_probe_agrees_with_tritonclient_on_a_live_server(embedded_server: EmbeddedServer) -> None:
    url = embedded_server.options.grpc_url
    health = probe_health(url, timeout_s=10.0)
    client = grpcclient.InferenceServerClient(url)
    try:
        index = client.get_model_repository_index()
        assert health.live == client.is_server_live() and health.ready == client.is_server_ready()
        assert health.server_version == client.get_server_metadata().version
    finally:
        client.close()
    assert health.models_ready == {entry.name: entry.state == "READY" for entry in index.models}
    assert set(health.models_ready) == {"dcgan", "fast-neural-style", "cyclegan"}


def test_the_health_command_loads_neither_tritonclient_nor_numpy() -> None:
    """What keeps `prodgen health` fast: the command's module graph, checked in a fresh interpreter."""
    code = (
        "import sys; sys.argv = ['prodgen', 'health', '--url', '127.0.0.1:1', '--timeout', '0.5']\n"
        "import prodgen.cli\n"
        "try:\n    prodgen.cli.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'tritonclient', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr
