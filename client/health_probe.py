"""Is a Triton server live and ready, and which models are: four gRPC calls with `grpc` alone.

`prodgen health` is what an operator's loop or a start-up script runs over and over, so it
must answer in a fraction of a second. tritonclient's gRPC package imports numpy and every
protobuf module of Triton's API on the way (about 0.2 s here), for four messages whose answers
are a bool, a version string and a list of (name, state) pairs. So these calls go through
grpc's generic unary API with the requests (all empty) and the answers' few fields read from
protobuf's wire format here; the field numbers are those of Triton's `grpc_service.proto`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from prodgen.client.failures import describe_failure
from prodgen.client.urls import grpc_target

_SERVICE = "/inference.GRPCInferenceService/"
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Health:
    url: str
    live: bool
    ready: bool
    server_version: str
    models_ready: dict[str, bool]


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) for each field of a protobuf message: ints for varints, bytes otherwise."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == _VARINT:
            value, at = _varint(data, at)
        elif wire_type == _LENGTH_DELIMITED:
            size, at = _varint(data, at)
            value, at = data[at : at + size], at + size
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
            value, at = data[at : at + size], at + size
        else:
            raise ValueError(f"protobuf wire type {wire_type} is not used by Triton's health messages")
        yield number, value


def _bool_field(data: bytes, number: int) -> bool:
    return any(field == number and bool(value) for field, value in _fields(data))


def _text_fields(data: bytes, number: int) -> list[str]:
    return [value.decode() for field, value in _fields(data) if field == number and isinstance(value, bytes)]


def _models_ready(index: bytes) -> dict[str, bool]:
    """RepositoryIndexResponse: models = 1 (ModelIndex: name = 1, version = 2, state = 3, reason = 4)."""
    ready: dict[str, bool] = {}
    for field, entry in _fields(index):
        if field == 1 and isinstance(entry, bytes):
            name, state = (_text_fields(entry, 1) or [""])[0], (_text_fields(entry, 3) or [""])[0]
            ready[name] = ready.get(name, False) or state == "READY"
    return ready


def probe_health(url: str, timeout_s: float) -> Health:
    """Server live and ready, its version and each model's readiness; one line (ProdgenError) on failure."""
    with grpc.insecure_channel(grpc_target(url)) as channel:

        def call(method: str, what: str) -> bytes:
            stub = channel.unary_unary(_SERVICE + method, request_serializer=bytes, response_deserializer=bytes)
            try:
                return bytes(stub(b"", timeout=timeout_s))
            except grpc.RpcError as error:
                status, details = str(error.code()), error.details() or str(error)
                raise describe_failure(what, url, timeout_s, status, details) from error

        live = _bool_field(call("ServerLive", "server live"), 1)
        ready = _bool_field(call("ServerReady", "server ready"), 1)
        version = (_text_fields(call("ServerMetadata", "server metadata"), 2) or ["unknown"])[0]
        models = _models_ready(call("RepositoryIndex", "repository index"))
    return Health(url, live, ready, version, models)
