"""Images through Triton's system shared memory, for a client on the same host as the server.

Over plain gRPC a request's pixels are copied into a protobuf message, through the loopback
socket and out of it again, and the response's the same way back; a 4000×4000 upscale moves
48 MB that way. With shared memory the client writes the input into a POSIX shared-memory
region it has registered with the server, the request carries only the region's name, offset
and size, and the server writes the output into a second region the client reads.

Regions belong to one client: made at its first request, reused while requests fit, replaced
by larger ones when a request does not, and removed from the server and from the system at
`close()` and after a failed request (so a broken connection never leaves a region behind).
Only a server on this machine can see the client's memory: any other URL is refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm

from prodgen.contract import TensorSpec
from prodgen.errors import ProdgenError

LOOPBACK_NAMES = ("localhost",)


def check_same_host(url: str) -> None:
    """Refuse a URL whose host is not a loopback address: its server cannot map this machine's memory."""
    host = url.rpartition(":")[0].strip("[]")
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)} if host else set()
    except socket.gaierror:
        addresses = set()
    loopback = bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    if not (loopback or host in LOOPBACK_NAMES):
        raise ProdgenError(
            f"shared memory needs the server on this machine: url '{url}' is not a loopback address "
            "(use localhost or 127.0.0.1, or leave shared memory off)"
        )


@dataclass
class _Region:
    name: str
    handle: Any
    byte_size: int


class SharedMemoryRegions:
    """One input and one output region of a client, registered with its server, sized per request."""

    def __init__(self, client: grpcclient.InferenceServerClient, url: str) -> None:
        check_same_host(url)
        self._client = client
        self._prefix = f"prodgen-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._regions: dict[str, _Region] = {}
        self._lock = threading.RLock()

    @property
    def names(self) -> list[str]:
        """The regions this client has registered with the server now."""
        return [region.name for region in self._regions.values()]

    def _region(self, role: str, byte_size: int, timeout_s: float) -> _Region:
        region = self._regions.get(role)
        if region is not None and region.byte_size >= byte_size:
            return region
        if region is not None:
            self._remove(role, timeout_s)
        name = f"{self._prefix}-{role}-{uuid.uuid4().hex[:6]}"
        handle = shm.create_shared_memory_region(name, "/" + name, byte_size, create_only=True)
        try:
            self._client.register_system_shared_memory(name, "/" + name, byte_size, client_timeout=timeout_s)
        except BaseException:
            shm.destroy_shared_memory_region(handle)
            raise
        self._regions[role] = _Region(name, handle, byte_size)
        return self._regions[role]

    def _remove(self, role: str, timeout_s: float) -> None:
        region = self._regions.pop(role)
        try:
            self._client.unregister_system_shared_memory(region.name, client_timeout=timeout_s)
        finally:
            shm.destroy_shared_memory_region(region.handle)

    def infer(
        self,
        model: str,
        specs: Sequence[TensorSpec],
        arrays: Mapping[str, np.ndarray],
        outputs: Sequence[tuple[TensorSpec, tuple[int, ...] | None]],
        client_timeout: float,
    ) -> dict[str, np.ndarray]:
        """One request: inputs written into the input region, outputs read from the output region
        (copied out, since the region is reused). `outputs` pairs each output with the most it can
        hold (batch included); an output of unknown size (None) comes back over gRPC."""
        with self._lock:
            try:
                return self._infer(model, specs, arrays, outputs, client_timeout)
            except shm.SharedMemoryException as error:
                with contextlib.suppress(Exception):
                    self.close(client_timeout)
                raise ProdgenError(f"shared memory for {model}: {error} ({error.__cause__ or 'no detail'})") from error
            except BaseException:
                with contextlib.suppress(Exception):
                    self.close(client_timeout)
                raise

    def _infer(
        self,
        model: str,
        specs: Sequence[TensorSpec],
        arrays: Mapping[str, np.ndarray],
        outputs: Sequence[tuple[TensorSpec, tuple[int, ...] | None]],
        timeout_s: float,
    ) -> dict[str, np.ndarray]:
        present = [(spec, np.ascontiguousarray(arrays[spec.name])) for spec in specs if spec.name in arrays]
        sizes = [
            int(np.prod(shape)) * np.dtype(spec.numpy_dtype).itemsize if shape is not None else 0
            for spec, shape in outputs
        ]
        source = self._region("input", sum(array.nbytes for _, array in present), timeout_s)
        target = self._region("output", max(sum(sizes), 1), timeout_s)
        shm.set_shared_memory_region(source.handle, [array for _, array in present])
        request, offset = [], 0
        for spec, array in present:
            tensor = grpcclient.InferInput(spec.name, list(array.shape), spec.dtype)
            tensor.set_shared_memory(source.name, array.nbytes, offset)
            request.append(tensor)
            offset += array.nbytes
        requested, offset = [], 0
        for (spec, shape), size in zip(outputs, sizes, strict=True):
            wanted = grpcclient.InferRequestedOutput(spec.name)
            if shape is not None:
                wanted.set_shared_memory(target.name, size, offset)
                offset += size
            requested.append(wanted)
        result = self._client.infer(model, request, outputs=requested, client_timeout=timeout_s)
        answers: dict[str, np.ndarray] = {}
        offset = 0
        for (spec, shape), size in zip(outputs, sizes, strict=True):
            if shape is None:
                answers[spec.name] = result.as_numpy(spec.name)
                continue
            returned = tuple(result.get_output(spec.name).shape)
            view = shm.get_contents_as_numpy(target.handle, spec.numpy_dtype, returned, offset)
            answers[spec.name] = view.copy()
            del view  # the region cannot be closed while a view of it exists
            offset += size
        return answers

    def close(self, timeout_s: float = 10.0) -> None:
        """Unregister every region from the server and remove it from the system; an unreachable
        server does not stop the local removal (its regions go when it stops)."""
        with self._lock:
            errors = []
            for role in list(self._regions):
                try:
                    self._remove(role, timeout_s)
                except Exception as error:  # noqa: BLE001 - the other regions are still removed
                    errors.append(error)
            if errors:
                raise errors[0]
