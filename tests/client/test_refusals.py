"""The client names why a server refused: load shedding and shutdown are not "server unreachable"."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tritonclient.utils import InferenceServerException

from prodgen.client import ProdgenClient
from prodgen.errors import ProdgenError
from tests_support import free_port


def refused(message: str) -> Callable[..., None]:
    def call(**_: object) -> None:
        raise InferenceServerException(message, status="StatusCode.UNAVAILABLE")

    return call


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[request id: <id_unknown>] Exceeds maximum queue size", "is overloaded and refused the request at once"),
        ("Request timeout expired", "is overloaded and refused the request at once"),
        ("Server is stopping, scheduler for model has stopped accepting new inference requests", "is shutting down"),
        ("failed to connect to all addresses", "cannot reach Triton"),
    ],
)
def test_unavailable_refusals_say_why(message: str, expected: str) -> None:
    with ProdgenClient(f"127.0.0.1:{free_port()}") as client:
        with pytest.raises(ProdgenError, match=expected):
            client._call("inference on m", refused(message))
