"""Load, unload and inspect models on the embedded server (Triton's explicit model control).

The server runs in explicit model-control mode: prodgen decides when a model is loaded
(once at start, again when its mirrored files change, again when an instance died), so a
model is never loaded twice and a failed load is seen and reported at once, instead of
Triton's repository poller retrying it every few seconds behind the operator's back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen.serve.processes import STUB_BINARY, children

CALL_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LoadOutcome:
    name: str
    before: tuple[int, ...]
    after: tuple[int, ...]
    error: str | None = None

    def describe(self) -> str:
        if self.error is not None:
            kept = f"; still serving version {_versions(self.after)}" if self.after else "; not served"
            return f"{self.name}: load failed: {self.error}{kept}"
        if not self.before:
            return f"{self.name}: loaded, serving version {_versions(self.after)}"
        if self.after != self.before:
            return f"{self.name}: now serving version {_versions(self.after)} (was {_versions(self.before)})"
        return f"{self.name}: reloaded, serving version {_versions(self.after)}"


def _versions(versions: tuple[int, ...]) -> str:
    return ", ".join(map(str, versions)) or "none"


def _first_line(error: InferenceServerException) -> str:
    return (error.message() or str(error)).strip().splitlines()[0][:300]


class ModelControl:
    def __init__(self, url: str) -> None:
        self._client = grpcclient.InferenceServerClient(url)

    def close(self) -> None:
        self._client.close()

    def ready_versions(self, name: str) -> tuple[int, ...]:
        index = self._client.get_model_repository_index(client_timeout=CALL_TIMEOUT_S)
        return tuple(
            sorted(int(m.version) for m in index.models if m.name == name and m.state == "READY" and m.version)
        )

    def load(self, name: str) -> LoadOutcome:
        """Load `name` (again); after a failure nothing of it stays half-loaded.

        A model whose load failed and has no version ready is unloaded explicitly: Triton's
        strict readiness then counts it as intentionally unloaded, and the server stays ready
        for the models that work."""
        before = self.ready_versions(name)
        try:
            self._client.load_model(name, client_timeout=CALL_TIMEOUT_S)
        except InferenceServerException as error:
            after = self.ready_versions(name)
            if not after:
                self.unload(name)
            return LoadOutcome(name, before, after, _first_line(error))
        return LoadOutcome(name, before, self.ready_versions(name))

    def unload(self, name: str) -> None:
        """Start unloading `name`; its readiness turns false at once (the unload finishes in the background)."""
        self._client.unload_model(name, client_timeout=CALL_TIMEOUT_S)


def stub_processes(server_pid: int, mirror: Path) -> dict[tuple[str, int], set[int]]:
    """The running python-backend stubs of the server, by (model, version) of the model.py they run."""
    found: dict[tuple[str, int], set[int]] = {}
    for child in children(server_pid):
        if not child.running or len(child.argv) < 2 or not child.argv[0].endswith(STUB_BINARY):
            continue
        script = Path(child.argv[1])
        if script.parent.parent.parent == mirror and script.parent.name.isdigit():
            found.setdefault((script.parent.parent.name, int(script.parent.name)), set()).add(child.pid)
    return found
