"""`prodgen batch` against the real embedded server: bad rows, URLs, and reruns that redo only what changed."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prodgen.client import ProdgenClient
from prodgen.client.batch import BatchJob, run_batch
from prodgen.client.batch.job import Connection
from prodgen.client.batch.journal import read_results
from prodgen.client.images import read_image, write_image
from prodgen.photos import fit, photograph
from prodgen.serve.server import EmbeddedServer
from tests_support import console_script

pytestmark = pytest.mark.e2e

MODEL = "fast-neural-style"  # image sides 32..2048


@pytest.fixture
def photo_server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server over tmp_path/web: where a shop's catalogue pictures live."""
    folder = tmp_path / "web"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _photo(index: int, side: int = 48) -> np.ndarray:
    photo = photograph(("coffee", "chelsea", "astronaut")[index % 3])
    return np.ascontiguousarray(fit(photo[index * 7 :, index * 11 :], side, side))


def test_bad_rows_are_recorded_with_their_reason_and_the_good_rows_finish(
    embedded_server: EmbeddedServer, tmp_path: Path, photo_server: str
) -> None:
    """57 good rows (paths, file:// and http:// URLs) and 3 bad ones (5 %): exit 1 naming the count."""
    lines = ["id,image"]
    for index in range(57):
        write_image(tmp_path / "web" / f"p{index}.png", _photo(index))
        reference = (
            f"web/p{index}.png",
            (tmp_path / "web" / f"p{index}.png").as_uri(),
            f"{photo_server}/p{index}.png",
        )[index % 3]
        lines.append(f"good-{index},{reference}")
    (tmp_path / "notes.jpg").write_text("this is a caption, not a picture")
    write_image(tmp_path / "tiny.png", _photo(0, side=16))
    lines += ["missing,gone.jpg", "text,notes.jpg", "tiny,tiny.png"]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    command = [console_script("prodgen"), "batch", str(tmp_path / "rows.csv"), "--task", "stylize", "--model", MODEL]
    command += ["--out", str(out), "--url", embedded_server.options.grpc_url, "--results", "jsonl"]

    run = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("Error: 3 of 60 rows failed (3 bad")
    table = {row["id"]: row for row in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert len(table) == 60
    assert "no file at" in table["missing"]["error"]
    assert "not an image file" in table["text"]["error"]
    assert "outside the model's bounds 32..2048" in table["tiny"]["error"]
    assert {table[name]["status"] for name in ("missing", "text", "tiny")} == {"bad"}
    good = [row for name, row in table.items() if name.startswith("good-")]
    assert all(row["status"] == "done" and row["error"] == "" for row in good)
    with ProdgenClient(embedded_server.options.grpc_url) as client:
        expected = client.stylize(MODEL, read_image(tmp_path / "web" / "p5.png"))
    np.testing.assert_array_equal(read_image(out / "good-5.png"), expected)


def test_a_rerun_redoes_only_new_and_changed_rows(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    for index in range(4):
        write_image(tmp_path / f"p{index}.png", _photo(index))
    manifest = tmp_path / "rows.csv"
    manifest.write_text("id,image,alpha\n" + "".join(f"S{index},p{index}.png,\n" for index in range(3)))
    job = BatchJob(manifest, "stylize", MODEL, tmp_path / "out", Connection((embedded_server.options.grpc_url,)))
    first = run_batch(job)
    assert (first.done, first.reused) == (3, 0)
    before = {row["id"]: row for row in read_results(first.results)}

    write_image(tmp_path / "p1.png", _photo(9))
    manifest.write_text(manifest.read_text() + "S3,p3.png,\n")
    second = run_batch(job)

    assert (second.done, second.reused) == (4, 2)
    after = {row["id"]: row for row in read_results(second.results)}
    assert after["S0"] == before["S0"] and after["S2"] == before["S2"]
    assert after["S1"]["key"] != before["S1"]["key"]
    assert after["S1"]["output_sha256"] != before["S1"]["output_sha256"]


def test_a_task_the_client_cannot_do_is_refused_before_any_row(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    from prodgen.errors import ProdgenError

    (tmp_path / "rows.csv").write_text("id,image\nA,a.png\n")
    job = BatchJob(
        tmp_path / "rows.csv", "upscale", MODEL, tmp_path / "out", Connection((embedded_server.options.grpc_url,))
    )
    with pytest.raises(ProdgenError, match="is a style model, not an upscaler"):
        run_batch(job)
    if getattr(ProdgenClient, "cutout", None) is None:
        with pytest.raises(ProdgenError, match="no cutout call"):
            run_batch(BatchJob(job.manifest, "cutout", MODEL, job.out, job.connection))
    assert not (tmp_path / "out").exists()
