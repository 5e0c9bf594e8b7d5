"""A catalogue job's manifest: a table a shop already has, one row per item.

CSV (header row), JSON lines (one object per line) or Parquet (read with pyarrow, an optional
dependency). Every row needs an `id` (the SKU, unique); the other columns a task reads are
`image` (a path relative to the manifest's folder, or a file:// or http(s):// URL), `prompt`,
`seed` and per-row overrides such as `steps` or `strength` (see `prodgen.client.batch.tasks`).
Other columns are the shop's own and are left alone. An empty cell is no value.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prodgen.errors import ProdgenError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass(frozen=True)
class ManifestRow:
    """One item of the manifest: its id and every non-empty cell, as read (strings from CSV)."""

    id: str
    values: dict[str, object] = field(default_factory=dict)

    def get(self, column: str) -> object | None:
        return self.values.get(column)


def _present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def _csv_records(path: Path) -> list[dict[str, object]]:
    with path.open(newline="", encoding="utf-8-sig") as file:
        return [dict(record) for record in csv.DictReader(file)]


def _jsonl_records(path: Path) -> list[dict[str, object]]:
    records = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ProdgenError(
                    f"manifest {path}, line {number}: not JSON ({error.msg}); expected one object a line"
                ) from error
            if not isinstance(record, dict):
                raise ProdgenError(
                    f"manifest {path}, line {number}: a JSON {type(record).__name__}, expected an object"
                )
            records.append(record)
    return records


def _parquet_records(path: Path) -> list[dict[str, object]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise ProdgenError(
            f"manifest {path}: Parquet needs pyarrow, which is not installed; "
            "pip install 'prodgen[ray]' (or pyarrow), or give a CSV or JSON lines manifest"
        ) from error
    try:
        return list(parquet.read_table(path).to_pylist())
    except Exception as error:  # noqa: BLE001 - pyarrow raises many kinds for a file that is not Parquet
        raise ProdgenError(f"manifest {path}: not a Parquet file pyarrow can read ({error})") from error


def manifest_format(path: Path) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ProdgenError(
            f"manifest {path}: '{path.suffix}' is not a manifest format; expected .csv, .jsonl or .parquet"
        )
    return kind


def read_manifest(path: Path) -> list[ManifestRow]:
    """The manifest's rows in order; a missing file, a missing `id` or a repeated id is refused in one line."""
    kind = manifest_format(path)
    if not path.is_file():
        raise ProdgenError(f"manifest: no file at {path}")
    reader = {"csv": _csv_records, "jsonl": _jsonl_records, "parquet": _parquet_records}[kind]
    try:
        records = reader(path)
    except UnicodeDecodeError as error:
        raise ProdgenError(f"manifest {path}: not UTF-8 text ({error.reason}); expected a {kind} table") from error
    rows = []
    for number, record in enumerate(records, start=1):
        raw_id = record.get("id")
        if not _present(raw_id):
            raise ProdgenError(f"manifest {path}, row {number}: no id; every row needs an `id` column (the SKU)")
        values = {str(key): value for key, value in record.items() if key != "id" and _present(value)}
        rows.append(ManifestRow(str(raw_id).strip(), values))
    repeated = [item for item, count in Counter(row.id for row in rows).items() if count > 1]
    if repeated:
        shown = ", ".join(repeated[:5]) + (", …" if len(repeated) > 5 else "")
        raise ProdgenError(f"manifest {path}: ids repeat ({shown}); expected one row per id")
    return rows
