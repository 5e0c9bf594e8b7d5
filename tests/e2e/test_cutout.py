"""`prodgen cutout` through the real server: RGBA cutouts at the photo's size, the matte check, one-line errors."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodgen import zoo
from prodgen.client import ProdgenClient
from prodgen.client.images import read_image, read_photo
from prodgen.contract import ImageBounds
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.matte_checks import check_matte
from prodgen.model_repository.config import BatchingOptions
from prodgen.serve.server import EmbeddedServer, ServerOptions
from tests_support import console_script, free_port

pytestmark = pytest.mark.e2e

CUTOUT = "u2netp-demo"
PHOTO = Path(__file__).parents[2] / "examples" / "photos" / "coffee.jpg"


@pytest.fixture(scope="module")
def cutout_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("cutout") / "models"
    model = dataclasses.replace(zoo.get(CUTOUT), bounds=ImageBounds(min_side=16, max_side=1024, opt_side=64))
    export_model(ExportRequest(model, repository, CUTOUT, batching=BatchingOptions(2), latency_budget_s=None))
    options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server:
        yield server


def cutout_cli(server: EmbeddedServer, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script("prodgen"), "cutout", *arguments, "--url", server.options.grpc_url],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cutout_writes_the_photo_with_its_matte_as_alpha(cutout_server: EmbeddedServer, tmp_path: Path) -> None:
    photo = read_image(PHOTO)
    with ProdgenClient(cutout_server.options.grpc_url) as client:
        (matte,) = client.cutout(CUTOUT, [photo])
    assert matte.shape == photo.shape[:2] and matte.dtype == np.uint8
    result = cutout_cli(cutout_server, CUTOUT, str(PHOTO), "--out", str(tmp_path), "--force")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "coffee.png") as written:
        assert written.mode == "RGBA" and written.size == (photo.shape[1], photo.shape[0])
        pixels = np.asarray(written)
    assert np.array_equal(pixels[..., :3], photo) and np.array_equal(pixels[..., 3], matte)
    assert np.array_equal(read_photo(tmp_path / "coffee.png"), pixels)  # what `prodgen restage` reads


def test_a_reported_matte_is_not_written_without_force(cutout_server: EmbeddedServer, tmp_path: Path) -> None:
    """The check's verdict on the served matte decides: reported in one warning line and held back, or written."""
    with ProdgenClient(cutout_server.options.grpc_url) as client:
        (matte,) = client.cutout(CUTOUT, [read_image(PHOTO)])
    problems = check_matte(matte)
    result = cutout_cli(cutout_server, CUTOUT, str(PHOTO), "--out", str(tmp_path))
    if problems:
        assert result.returncode == 1
        assert f"warning: {PHOTO}: {'; '.join(problems)}" in result.stdout.splitlines()
        assert not (tmp_path / "coffee.png").exists()
    else:
        assert result.returncode == 0 and "warning" not in result.stdout
        assert (tmp_path / "coffee.png").exists()


def test_bad_photo_and_wrong_model_are_one_line_errors(cutout_server: EmbeddedServer, tmp_path: Path) -> None:
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a picture")
    result = cutout_cli(cutout_server, CUTOUT, str(not_a_photo), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"Error: {not_a_photo}: not an image file PIL can read (expected PNG, JPEG, WebP, …)"
    )
    result = cutout_cli(cutout_server, "u2netp-dem", str(PHOTO), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error: model 'u2netp-dem' is not served at")
    assert len(result.stderr.strip().splitlines()) == 1
    sliver = tmp_path / "sliver.png"
    Image.fromarray(np.zeros((8, 300, 3), dtype=np.uint8)).save(sliver)
    result = cutout_cli(cutout_server, CUTOUT, str(sliver), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: image: height 8 is outside the model's bounds 16..1024 pixels"
    assert not (tmp_path / "out").exists()
