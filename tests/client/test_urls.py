"""The URL of Triton's gRPC endpoint, checked before any call."""

from __future__ import annotations

import pytest

from prodgen.client.urls import grpc_target
from prodgen.errors import ProdgenError


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:8000", "over gRPC, not HTTP"),
        ("https://triton.shop:443", "over gRPC, not HTTPS"),
        ("grpc://localhost:8001", "give no scheme (grpc://)"),
        ("localhost", "no port"),
        ("localhost:http", "port 'http' is not a number"),
        ("localhost:8001/v2", "port '8001/v2' is not a number"),
    ],
)
def test_url_mistakes_say_what_is_wrong_and_what_is_expected(url: str, message: str) -> None:
    with pytest.raises(ProdgenError, match="expected host:port of Triton's gRPC endpoint") as raised:
        grpc_target(url)
    assert message in str(raised.value)


@pytest.mark.parametrize("url", ["localhost:8001", "127.0.0.1:9001", "[::1]:8001", " triton.shop:443 "])
def test_host_and_port_pass(url: str) -> None:
    assert grpc_target(url) == url.strip()
