"""Which rows need work: each output is keyed by what made it, and a rerun redoes only what changed.

The key hashes the row's id, the input picture's content, the model's name and served
version, the task, the prompt, the seed and the overrides. A row whose journal entry has the
same key and whose output file is still there, unchanged, is done; a row refused for its own
fault with the same key (a text file named as a picture) is refused again without a call.
Rows that failed because the server was away, rows whose picture or settings changed, new
rows and every row after a new model version are planned for work.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodgen.client.batch.manifest import ManifestRow
from prodgen.client.batch.records import BAD, DONE, RowResult, WorkItem
from prodgen.client.batch.sources import content_hash, read_source
from prodgen.client.batch.tasks import PARAM_TYPES, BatchTask, RowInputs
from prodgen.errors import ProdgenError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


@dataclass(frozen=True)
class JobIdentity:
    """What every row of a job shares: the task and the served model it runs on."""

    task: BatchTask
    model: str
    model_version: str
    base: Path
    """The manifest's folder: relative picture paths are read from there."""
    out: Path


def output_name(row_id: str) -> str:
    """The output file for a row: `<id>.png` when the id is a safe file name, else a cleaned
    name with a short hash of the id (so two ids never share a file)."""
    if SAFE_NAME.fullmatch(row_id) and not row_id.endswith("."):
        return f"{row_id}.png"
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", row_id).strip("._")[:80] or "row"
    return f"{cleaned}-{zlib.crc32(row_id.encode('utf-8')):08x}.png"


def _parse(name: str, value: object, kind: type | None = None) -> Any:
    """A cell as the type its column is read as (CSV cells are text; '4' and 4.0 are the integer 4)."""
    kind = kind or PARAM_TYPES[name]
    if kind is str:
        return str(value)
    try:
        number = float(value) if isinstance(value, str) else value
        if kind is int:
            if not isinstance(number, (int, float)) or number != int(number):
                raise ValueError
            return int(number)
        return float(number)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ProdgenError(f"{name} {value!r}: expected {'an integer' if kind is int else 'a number'}") from None


def seed_for(row_id: str) -> int:
    """A row's seed when it gives none: from its id, so each SKU gets its own picture, the same on every run."""
    return int.from_bytes(hashlib.sha256(row_id.encode("utf-8")).digest()[:4], "big") % (2**31)


def row_inputs(task: BatchTask, row: ManifestRow) -> RowInputs:
    """The prompt, seed and overrides `task` reads from `row`, typed; columns it does not take are left alone."""
    prompt = row.get("prompt")
    if task.prompt and prompt is None:
        raise ProdgenError(f"task {task.name} needs a prompt: the row's `prompt` is empty")
    seed = None
    if task.seeded:
        given = row.get("seed")
        seed = seed_for(row.id) if given is None else _parse("seed", given, int)
        if seed < 0:
            raise ProdgenError(f"seed {seed}: expected a seed >= 0")
    params = {name: _parse(name, row.get(name)) for name in task.params if row.get(name) is not None}
    return RowInputs(str(prompt) if task.prompt else None, seed, params)


def output_key(job: JobIdentity, row_id: str, input_sha256: str | None, inputs: RowInputs) -> str:
    made_of = {
        "id": row_id,
        "input": input_sha256,
        "model": job.model,
        "version": job.model_version,
        "task": job.task.name,
        "prompt": inputs.prompt,
        "seed": inputs.seed,
        "params": inputs.params,
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _still_done(job: JobIdentity, previous: RowResult) -> bool:
    if previous.status == BAD:
        return True
    path = job.out / previous.output
    return previous.status == DONE and path.is_file() and file_sha256(path) == previous.output_sha256


def bad_row(job: JobIdentity, row: ManifestRow, reason: str, **known: Any) -> RowResult:
    return RowResult(
        id=row.id,
        status=BAD,
        task=job.task.name,
        model=job.model,
        model_version=job.model_version,
        source=str(row.get("image") or ""),
        error=reason,
        **known,
    )


def plan_row(job: JobIdentity, row: ManifestRow, previous: RowResult | None) -> WorkItem | RowResult:
    """The work `row` needs, or its result when it needs none (done before, or refused now)."""
    try:
        inputs = row_inputs(job.task, row)
    except ProdgenError as error:
        return bad_row(job, row, str(error))
    source = row.get("image")
    input_sha256 = None
    if job.task.picture is not None:
        if source is None:
            return bad_row(job, row, f"task {job.task.name} needs a picture: the row's `image` is empty")
        try:
            input_sha256 = content_hash(read_source(str(source), job.base))
        except ProdgenError as error:
            return bad_row(job, row, str(error))
    key = output_key(job, row.id, input_sha256, inputs)
    if previous is not None and previous.key == key and _still_done(job, previous):
        return previous
    return WorkItem(
        id=row.id,
        key=key,
        output=output_name(row.id),
        source=None if source is None else str(source),
        input_sha256=input_sha256,
        prompt=inputs.prompt,
        seed=inputs.seed,
        params=inputs.params,
    )


def plan(job: JobIdentity, rows: list[ManifestRow], previous: Mapping[str, RowResult]) -> list[WorkItem | RowResult]:
    return [plan_row(job, row, previous.get(row.id)) for row in rows]
