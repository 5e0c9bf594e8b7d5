"""The URL a user gives for Triton: its gRPC endpoint as host:port, checked before any call.

Triton listens on three ports (gRPC, HTTP, metrics) and users coming from its HTTP API or
from browsers write `http://…`; tritonclient's gRPC channel takes a bare `host:port`. A
mistake here would otherwise surface as "cannot reach Triton" while the server is up.
"""

from __future__ import annotations

from prodgen.errors import ProdgenError

EXAMPLE = "localhost:8001"


def grpc_target(url: str) -> str:
    """`url` as the host:port tritonclient's gRPC channel expects, or a ProdgenError saying what is wrong."""
    text = url.strip()
    expected = f"expected host:port of Triton's gRPC endpoint, e.g. {EXAMPLE}"
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() in ("http", "https"):
            raise ProdgenError(f"url '{url}': prodgen talks to Triton over gRPC, not {scheme.upper()}; {expected}")
        raise ProdgenError(f"url '{url}': give no scheme ({scheme}://); {expected}")
    host, colon, port = text.rpartition(":")
    if not colon or not host or host.endswith(":"):
        raise ProdgenError(f"url '{url}': no port; {expected}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ProdgenError(f"url '{url}': port '{port}' is not a number in 1..65535; {expected}")
    return text
