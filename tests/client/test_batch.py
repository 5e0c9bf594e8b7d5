"""Catalogue jobs without a server: manifests, keys, the journal, and what counts as the server being away."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prodgen.client.api import ProdgenClient
from prodgen.client.batch.execute import Decoded, Outage, decode, infer_and_write, write_output
from prodgen.client.batch.journal import Journal
from prodgen.client.batch.manifest import read_manifest
from prodgen.client.batch.planning import JobIdentity, output_name, plan_row
from prodgen.client.batch.records import BAD, DONE, FAILED, RowResult, WorkItem
from prodgen.client.batch.tasks import batch_task
from prodgen.client.images import read_image, write_image
from prodgen.errors import ProdgenError
from prodgen.photos import fit, photograph
from tests_support import free_port


def _job(tmp_path: Path, task: str = "stylize", version: str = "1") -> JobIdentity:
    return JobIdentity(batch_task(task), "look", version, tmp_path, tmp_path / "out")


def test_csv_and_json_lines_manifests_give_the_same_rows(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("id,image,prompt,seed,steps,title\nA1,a.png,,,,mug\nB2,b.png,a red mug,7,4,\n")
    lines = [
        {"id": "A1", "image": "a.png", "title": "mug"},
        {"id": "B2", "image": "b.png", "prompt": "a red mug", "seed": 7, "steps": 4},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    from_csv, from_jsonl = read_manifest(tmp_path / "rows.csv"), read_manifest(tmp_path / "rows.jsonl")
    assert [row.id for row in from_csv] == [row.id for row in from_jsonl] == ["A1", "B2"]
    task = batch_task("img2img")
    from prodgen.client.batch.planning import row_inputs

    assert row_inputs(task, from_csv[1]) == row_inputs(task, from_jsonl[1])
    assert row_inputs(task, from_csv[1]).params == {"steps": 4}


def test_parquet_manifest_or_one_line_saying_what_to_install(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(ProdgenError, match="Parquet needs pyarrow"):
            read_manifest(path)
        return
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist([{"id": "A1", "image": "a.png", "seed": 3}]), path)
    (row,) = read_manifest(path)
    assert (row.id, row.get("image"), row.get("seed")) == ("A1", "a.png", 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("image\na.png\n", "row 1: no id"),
        ("id,image\nA,a.png\nA,b.png\n", "ids repeat \\(A\\)"),
    ],
)
def test_a_manifest_without_ids_or_with_repeated_ids_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "rows.csv").write_text(text)
    with pytest.raises(ProdgenError, match=expected):
        read_manifest(tmp_path / "rows.csv")


def test_output_names_are_the_ids_when_safe_and_never_shared() -> None:
    assert output_name("SKU-123_a.b") == "SKU-123_a.b.png"
    unsafe = [output_name(row_id) for row_id in ("a/b", "a b", "a_b", "../etc", "")]
    assert len(set(unsafe)) == len(unsafe)
    assert all("/" not in name and not name.startswith(".") for name in unsafe)


def test_the_key_changes_with_the_picture_the_settings_and_the_model_version(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", fit(photograph("coffee"), 40, 40))
    (tmp_path / "rows.csv").write_text("id,image,alpha\nA,a.png,0.5\n")
    (row,) = read_manifest(tmp_path / "rows.csv")
    first = plan_row(_job(tmp_path), row, None)
    assert isinstance(first, WorkItem)
    assert plan_row(_job(tmp_path), row, None) == first
    assert plan_row(_job(tmp_path, version="2"), row, None).key != first.key
    (tmp_path / "rows.csv").write_text("id,image,alpha\nA,a.png,0.75\n")
    assert plan_row(_job(tmp_path), read_manifest(tmp_path / "rows.csv")[0], None).key != first.key
    write_image(tmp_path / "a.png", fit(photograph("chelsea"), 40, 40))
    assert plan_row(_job(tmp_path), row, None).key != first.key


def test_a_row_is_done_only_while_its_output_file_is_whole(tmp_path: Path) -> None:
    job = _job(tmp_path)
    job.out.mkdir()
    write_image(tmp_path / "a.png", fit(photograph("coffee"), 40, 40))
    (tmp_path / "rows.csv").write_text("id,image\nA,a.png\n")
    (row,) = read_manifest(tmp_path / "rows.csv")
    item = plan_row(job, row, None)
    assert isinstance(item, WorkItem)
    digest = write_output(job.out / item.output, np.zeros((8, 8, 3), np.uint8))
    done = RowResult(row.id, DONE, "stylize", "look", "1", output=item.output, output_sha256=digest, key=item.key)
    assert plan_row(job, row, done) == done
    (job.out / item.output).write_bytes(b"\x89PNG torn")
    assert isinstance(plan_row(job, row, done), WorkItem)


def test_missing_files_and_text_files_are_bad_rows_with_their_reason(tmp_path: Path) -> None:
    job = _job(tmp_path)
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "rows.csv").write_text("id,image\nmissing,gone.png\ntext,notes.png\n")
    missing, text = read_manifest(tmp_path / "rows.csv")
    refused = plan_row(job, missing, None)
    assert isinstance(refused, RowResult) and refused.status == BAD and "no file at" in refused.error
    item = plan_row(job, text, None)
    assert isinstance(item, WorkItem)
    decoded = decode(job, item)
    assert "not an image file" in decoded.error and "notes.png" in decoded.error


def test_a_killed_writer_leaves_no_torn_line_and_no_half_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Journal(out) as journal:
        journal.append(RowResult("A", DONE, "stylize", "look", "1", key="k"))
    with journal.path.open("a") as file:
        file.write('{"id": "B", "status": "do')  # SIGKILL mid-line
    (out / ".B.x.part.png").write_bytes(b"half")
    with Journal(out) as journal:
        assert list(journal.load()) == ["A"]
        journal.append(RowResult("C", DONE, "stylize", "look", "1", key="k"))
        assert list(journal.load()) == ["A", "C"]
    assert not list(out.glob(".*.part*"))


def test_a_second_job_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path / "out"), pytest.raises(ProdgenError, match="another batch job"), Journal(tmp_path / "out"):
        pass


def test_rows_fail_after_the_retry_deadline_when_no_server_answers(tmp_path: Path) -> None:
    """Nothing listens on the port: the row is retried until the deadline, then recorded as failed (not bad)."""
    job = _job(tmp_path, task="stylize")
    job.out.mkdir()
    item = WorkItem("A", "k", "A.png", "a.png", "h", None, None)
    with ProdgenClient(f"127.0.0.1:{free_port()}", timeout_s=2.0) as client:
        result = infer_and_write(job, client, Decoded(item, np.zeros((40, 40, 3), np.uint8)), Outage(1.5))
    assert result.status == FAILED
    assert result.attempts >= 2
    assert "retry deadline" in result.error and "cannot reach Triton" in result.error
    assert not (job.out / "A.png").exists()


def test_read_image_and_the_batch_decoder_agree(tmp_path: Path) -> None:
    job = _job(tmp_path)
    picture = fit(photograph("astronaut"), 50, 70)
    write_image(tmp_path / "a.png", picture)
    (tmp_path / "rows.csv").write_text("id,image\nA,a.png\n")
    item = plan_row(job, read_manifest(tmp_path / "rows.csv")[0], None)
    assert isinstance(item, WorkItem)
    decoded = decode(job, item).picture
    assert decoded is not None
    np.testing.assert_array_equal(decoded, read_image(tmp_path / "a.png"))
