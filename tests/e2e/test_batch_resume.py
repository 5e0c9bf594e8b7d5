"""`prodgen batch` killed with SIGKILL half way and run again, on the real embedded server.

Counts the model's calls through Triton's own statistics: the kill may cost the rows in
flight, and a rerun of a finished job costs none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image

from prodgen.bench.triton_stats import parse_statistics
from prodgen.client.batch.journal import Journal, read_results
from prodgen.client.images import write_image
from prodgen.photos import PHOTO_NAMES, photograph
from prodgen.serve.server import EmbeddedServer
from tests_support import console_script

pytestmark = pytest.mark.e2e

MODEL = "fast-neural-style"
ROWS = 60


def model_calls(url: str) -> int:
    """Requests the server has run for MODEL (succeeded or failed), from Triton's statistics."""
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = parse_statistics(client.get_inference_statistics(MODEL, as_json=True), MODEL)
    finally:
        client.close()
    return stats.durations["success"].count + stats.durations["fail"].count


def write_catalogue(folder: Path, rows: int, side: int = 64) -> Path:
    """`rows` different crops of the bundled photographs, and a CSV manifest naming them."""
    lines = ["id,image"]
    for index in range(rows):
        photo = photograph(PHOTO_NAMES[index % len(PHOTO_NAMES)])
        top, left = (index * 37) % (photo.shape[0] - side), (index * 53) % (photo.shape[1] - side)
        write_image(
            folder / "photos" / f"p{index:03d}.jpg", np.ascontiguousarray(photo[top : top + side, left : left + side])
        )
        lines.append(f"SKU-{index:03d},photos/p{index:03d}.jpg")
    manifest = folder / "catalogue.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def batch_command(manifest: Path, out: Path, url: str) -> list[str]:
    return [
        console_script("prodgen"),
        "batch",
        str(manifest),
        "--task",
        "stylize",
        "--model",
        MODEL,
        "--out",
        str(out),
        "--url",
        url,
        "--concurrency",
        "2",
    ]


def finished_rows(out: Path) -> int:
    path = Journal(out).path
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_job_killed_half_way_finishes_on_rerun_with_each_output_once(
    embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    url = embedded_server.options.grpc_url
    manifest = write_catalogue(tmp_path, ROWS)
    out = tmp_path / "out"
    before = model_calls(url)

    process = subprocess.Popen(batch_command(manifest, out, url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while finished_rows(out) < ROWS // 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = finished_rows(out)
    assert 0 < killed_at < ROWS, f"the kill came at {killed_at} of {ROWS} rows; expected about half way"

    rerun = subprocess.run(batch_command(manifest, out, url), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    outputs = sorted(out.glob("*.png"))
    assert [path.name for path in outputs] == [f"SKU-{index:03d}.png" for index in range(ROWS)]
    for path in outputs:
        with Image.open(path) as picture:
            picture.load()  # a torn file fails to decode
            assert picture.size == (64, 64)
    table = read_results(out / "results.csv")
    assert [row["id"] for row in table] == [f"SKU-{index:03d}" for index in range(ROWS)]
    assert {row["status"] for row in table} == {"done"}
    assert all(row["model"] == MODEL and row["model_version"] and row["key"] for row in table)
    calls = model_calls(url) - before
    assert ROWS <= calls <= 1.1 * ROWS, f"{calls} model calls for {ROWS} rows"
    assert not list(out.glob(".*.part*"))

    again = subprocess.run(batch_command(manifest, out, url), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert model_calls(url) - before == calls, "a second run of an unchanged manifest called the model"
    assert f"{ROWS} done ({ROWS} from an earlier run)" in again.stdout
    assert read_results(out / "results.csv") == table
