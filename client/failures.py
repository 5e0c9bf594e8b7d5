"""What a failed Triton call means for the user, in one line: shared by the gRPC client and the
health probe, which see the same gRPC status codes and messages through different libraries."""

from __future__ import annotations

from prodgen.errors import ProdgenError

SHED_MESSAGES = ("Exceeds maximum queue size", "Request timeout expired")
"""Triton's words when its queue policy refuses a request: the server is up but overloaded."""


def describe_failure(what: str, url: str, timeout_s: float, status: str, message: str) -> ProdgenError:
    """`status` is the gRPC status code's name (e.g. "StatusCode.UNAVAILABLE"), `message` its details."""
    lowered = message.lower()
    if "UNAVAILABLE" in status and any(reason in message for reason in SHED_MESSAGES):
        return ProdgenError(
            f"{what}: {url} is overloaded and refused the request at once ({message.strip()}); "
            "retry later or on another server"
        )
    if "UNAVAILABLE" in status and "server is stopping" in lowered:
        return ProdgenError(f"{what}: {url} is shutting down; retry on another server")
    if "UNAVAILABLE" in status and "socket closed" in lowered:
        # something listens there but hangs up on HTTP/2: Triton's HTTP or metrics port, typically
        return ProdgenError(
            f"{url} accepts connections but does not speak gRPC: is it Triton's HTTP or metrics port? "
            "expected the gRPC port (prodgen serve --grpc-port, 8001 by default)"
        )
    if "UNAVAILABLE" in status or "failed to connect" in lowered or "connection refused" in lowered:
        return ProdgenError(f"cannot reach Triton at {url} ({what}); is `prodgen serve` running?")
    if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in message:
        return ProdgenError(f"{what}: no answer from {url} within {timeout_s:g} s (--timeout)")
    return ProdgenError(f"{what}: {message}")
