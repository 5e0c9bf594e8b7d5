"""The rows of a catalogue job: a row planned for work, and what became of a row (the results table's row)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DONE, BAD, FAILED, PENDING = "done", "bad", "failed", "pending"
"""A row's status: its output is written; the row itself is wrong (missing or broken picture,
refused by the model: redoing it gives the same); the server could not be reached within the
retry deadline (a rerun tries again); not reached (the job was stopped)."""


@dataclass(frozen=True)
class WorkItem:
    """A row that needs work: everything an engine's worker needs, as plain data (Ray ships it)."""

    id: str
    key: str
    output: str
    """The output file's name inside the job's folder."""
    source: str | None
    input_sha256: str | None
    prompt: str | None
    seed: int | None
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkItem:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class RowResult:
    """One row of the results table (and one line of the journal)."""

    id: str
    status: str
    task: str
    model: str
    model_version: str
    output: str = ""
    output_sha256: str = ""
    source: str = ""
    input_sha256: str = ""
    prompt: str = ""
    seed: int | None = None
    params: str = "{}"
    """The overrides used, as JSON (sorted keys)."""
    key: str = ""
    """What made the output, hashed: reused by a rerun only while it is the same."""
    error: str = ""
    attempts: int = 0
    seconds_decode: float = 0.0
    seconds_infer: float = 0.0
    seconds_write: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RowResult:
        known = {item.name for item in fields(cls)}
        return cls(**{name: value for name, value in json.loads(text).items() if name in known})


def params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


TIMING_COLUMNS = ("seconds_decode", "seconds_infer", "seconds_write")
COLUMNS = tuple(item.name for item in fields(RowResult))
