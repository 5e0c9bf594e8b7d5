"""One row's work, shared by both engines: decode its picture, call the model, write the output.

Split in two so Ray can decode on CPU workers and call Triton from its actors: `decode`
(bytes → picture, no server) and `infer_and_write` (one task call, retried while the server is
away, then the output written under a temporary name and renamed: never half-written).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import InferenceServerException

from prodgen.client.api import ProdgenClient
from prodgen.client.batch.planning import JobIdentity, file_sha256
from prodgen.client.batch.records import BAD, DONE, FAILED, RowResult, WorkItem, params_json
from prodgen.client.batch.sources import content_hash, read_source
from prodgen.client.batch.tasks import RowInputs
from prodgen.client.fleet import is_replica_fault
from prodgen.client.images import read_image, read_photo, write_image
from prodgen.errors import ProdgenError

RETRY_PAUSE_S = 1.0
"""Pause between tries while the server is away."""


@dataclass(frozen=True)
class Decoded:
    """A row's picture decoded (None for tasks without one), or why it could not be."""

    item: WorkItem
    picture: np.ndarray | None
    error: str = ""
    seconds: float = 0.0


def _decode_bytes(data: bytes, mode: str, label: str) -> np.ndarray:
    """Pixels of picture file bytes as `read_image`/`read_photo` read a file (same checks, same conversion)."""
    with tempfile.TemporaryDirectory(prefix="prodgen-batch-") as folder:
        path = Path(folder) / "picture"
        path.write_bytes(data)
        try:
            return read_photo(path) if mode == "photo" else read_image(path)
        except ProdgenError as error:
            raise ProdgenError(str(error).replace(str(path), label)) from None


def decode(job: JobIdentity, item: WorkItem) -> Decoded:
    """Read and decode `item`'s picture; a changed, missing or broken file is the row's error."""
    started = time.monotonic()
    if job.task.picture is None or item.source is None:
        return Decoded(item, None)
    try:
        data = read_source(item.source, job.base)
        if content_hash(data) != item.input_sha256:
            raise ProdgenError(f"image {item.source}: changed while the job ran; run the job again")
        picture = _decode_bytes(data, job.task.picture, item.source)
    except ProdgenError as error:
        return Decoded(item, None, str(error), time.monotonic() - started)
    return Decoded(item, picture, seconds=time.monotonic() - started)


def is_server_away(error: ProdgenError) -> bool:
    """True when the server (or every replica) could not answer, as opposed to refusing the request."""
    cause = error.__cause__
    if isinstance(cause, InferenceServerException):
        return is_replica_fault(cause)
    text = str(error)
    return "cannot reach Triton" in text or "no replica answered" in text or "is shutting down" in text


class Outage:
    """When the server went away, shared by a worker pool: rows retry until the outage is
    `deadline_s` old, then fail at once (a server that stays away costs one deadline, not one per row)."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self._since: float | None = None
        self._lock = threading.Lock()

    def ended(self) -> None:
        with self._lock:
            self._since = None

    def remaining(self) -> float:
        """Seconds left to retry in: the outage starts now if none is running."""
        with self._lock:
            now = time.monotonic()
            if self._since is None:
                self._since = now
            return self.deadline_s - (now - self._since)


def write_output(path: Path, picture: np.ndarray) -> str:
    """Write `picture` under a temporary name beside `path`, flush it to disk and rename it into
    place, so `path` is either absent or whole; returns the file's sha256."""
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part.png", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write_image(temporary, picture)
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        digest = file_sha256(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return digest


def infer_and_write(job: JobIdentity, client: ProdgenClient, decoded: Decoded, outage: Outage) -> RowResult:
    """Run the task on one decoded row and write its output; every outcome is a result, none is raised.

    A refusal of the row itself (bounds, a value the model rejects) is BAD and stays refused for
    the same key; the server away past the deadline, or anything unexpected, is FAILED and redone
    by the next run."""
    item = decoded.item
    known: dict[str, Any] = {
        "id": item.id,
        "task": job.task.name,
        "model": job.model,
        "model_version": job.model_version,
        "source": item.source or "",
        "input_sha256": item.input_sha256 or "",
        "prompt": item.prompt or "",
        "seed": item.seed,
        "params": params_json(item.params),
        "key": item.key,
        "seconds_decode": round(decoded.seconds, 6),
    }
    if decoded.error:
        return RowResult(status=BAD, error=decoded.error, **known)
    inputs = RowInputs(item.prompt, item.seed, item.params)
    attempts = 0
    started = time.monotonic()
    while True:
        attempts += 1
        try:
            picture = job.task.run(client, job.model, decoded.picture, inputs)
            outage.ended()
            break
        except ProdgenError as error:
            if not is_server_away(error):
                return RowResult(status=BAD, error=str(error), attempts=attempts, **known)
            left = outage.remaining()
            if left <= 0:
                message = f"server away past the retry deadline ({outage.deadline_s:g} s): {error}"
                return RowResult(status=FAILED, error=message, attempts=attempts, **known)
            time.sleep(min(RETRY_PAUSE_S, left))
        except Exception as error:  # noqa: BLE001 - a row's surprise is recorded, and the job goes on
            message = f"{type(error).__name__}: {error}"
            return RowResult(status=FAILED, error=message, attempts=attempts, **known)
    inferred = time.monotonic()
    try:
        output_sha256 = write_output(job.out / item.output, picture)
    except (OSError, ProdgenError) as error:
        return RowResult(status=FAILED, error=f"writing {item.output}: {error}", attempts=attempts, **known)
    return RowResult(
        status=DONE,
        output=item.output,
        output_sha256=output_sha256,
        attempts=attempts,
        seconds_infer=round(inferred - started, 6),
        seconds_write=round(time.monotonic() - inferred, 6),
        **known,
    )
