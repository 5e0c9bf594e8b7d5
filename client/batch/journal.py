"""What a catalogue job has finished, kept so a SIGKILL loses at most the rows in flight.

Each finished row is one JSON line appended to `OUT/.prodgen-batch/journal.jsonl` and flushed
to disk (fsync) before the next; a torn last line (the process died mid-write) is dropped on
the next start. At the end of a run the journal is compacted (the latest entry per row) and
the results table is written from it; both are written to a temporary file and renamed, so
either the old or the new one is there, never half of one. A lock file keeps two jobs from
writing the same folder at once.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from prodgen.client.batch.records import COLUMNS, RowResult
from prodgen.errors import ProdgenError

STATE_FOLDER = ".prodgen-batch"
RESULT_FORMATS = ("csv", "jsonl", "parquet")


@contextmanager
def atomic_file(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A file written beside `path` under a temporary name, flushed to disk and renamed onto `path`."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        opened: IO[Any] = os.fdopen(handle, "wb") if binary else os.fdopen(handle, "w", encoding="utf-8", newline="")
        with opened as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


class Journal:
    """The append-only record of finished rows in a job's output folder."""

    def __init__(self, out: Path) -> None:
        self.folder = out / STATE_FOLDER
        self.path = self.folder / "journal.jsonl"
        self._file: IO[str] | None = None
        self._lock: IO[str] | None = None

    def __enter__(self) -> Journal:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = (self.folder / "lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ProdgenError(
                f"--out {self.folder.parent}: another batch job is writing there; wait for it or choose another folder"
            ) from None
        self._drop_torn_tail()
        self._remove_temporaries()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _drop_torn_tail(self) -> None:
        """Cut a last line that has no newline: the row it was recording is redone."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("rb+") as file:
                file.truncate(data.rfind(b"\n") + 1)
                os.fsync(file.fileno())

    def _remove_temporaries(self) -> None:
        """Delete the half-written files a killed run left (outputs and tables are renamed into place only whole)."""
        for leftover in self.folder.parent.glob(".*.part*"):
            leftover.unlink(missing_ok=True)
        for leftover in self.folder.glob(".*.part*"):
            leftover.unlink(missing_ok=True)

    def load(self) -> dict[str, RowResult]:
        """The latest entry of each row; lines that do not parse (a foreign edit) are skipped."""
        latest: dict[str, RowResult] = {}
        if not self.path.exists():
            return latest
        with self.path.open(encoding="utf-8") as file:
            for line in file:
                try:
                    result = RowResult.from_json(line)
                except (json.JSONDecodeError, TypeError):
                    continue
                latest[result.id] = result
        return latest

    def append(self, result: RowResult) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(result.to_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def compact(self, results: Iterable[RowResult]) -> None:
        """Rewrite the journal as one line per row (the latest)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with atomic_file(self.path) as file:
            for result in results:
                file.write(result.to_json() + "\n")


def results_path(out: Path, kind: str) -> Path:
    return out / f"results.{kind}"


def write_results(path: Path, rows: list[RowResult]) -> Path:
    """The results table, one row per manifest row in manifest order, as CSV, JSON lines or Parquet."""
    kind = path.suffix.lstrip(".")
    if kind == "csv":
        with atomic_file(path) as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in asdict(row).items()} for row in rows)
    elif kind == "jsonl":
        with atomic_file(path) as file:
            file.writelines(row.to_json() + "\n" for row in rows)
    elif kind == "parquet":
        import pyarrow as arrow
        import pyarrow.parquet as parquet

        with atomic_file(path, binary=True) as file:
            parquet.write_table(arrow.Table.from_pylist([asdict(row) for row in rows]), file)
    else:
        raise ProdgenError(f"results format '{kind}': expected one of {', '.join(RESULT_FORMATS)}")
    return path


def read_results(path: Path) -> list[dict[str, str]]:
    """A CSV results table as text cells (for tests and scripts comparing tables)."""
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))
