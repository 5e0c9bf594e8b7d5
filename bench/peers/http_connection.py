"""The closed loop's link to an HTTP peer: one keep-alive connection per worker, request
bodies encoded once, as the gRPC link builds its requests once."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from prodgen.bench.load import Endpoint
from prodgen.bench.payloads import Payload
from prodgen.bench.peers.wire import Arrays, decode_arrays, encode_arrays

PREDICT_PATH = "/predict"


def request_body(payload: Payload) -> bytes:
    return json.dumps({"inputs": encode_arrays(payload)}).encode()


class HttpError(Exception):
    pass


class HttpConnection:
    def __init__(self, endpoint: Endpoint, payloads: list[Payload]) -> None:
        address = urlsplit(endpoint.url)
        self.connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=endpoint.timeout_s)
        self.bodies = [request_body(payload) for payload in payloads]

    def post(self, body: bytes) -> bytes:
        self.connection.request("POST", PREDICT_PATH, body, {"Content-Type": "application/json"})
        answer = self.connection.getresponse()
        content = answer.read()
        if answer.status != 200:
            raise HttpError(f"HTTP {answer.status}: {content[:200].decode(errors='replace')}")
        return content

    def infer(self, payload_index: int) -> None:
        self.post(self.bodies[payload_index])

    def outputs(self, payload: Payload) -> Arrays:
        return decode_arrays(json.loads(self.post(request_body(payload)))["outputs"])

    def close(self) -> None:
        self.connection.close()
