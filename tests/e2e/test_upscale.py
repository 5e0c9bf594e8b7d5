"""`prodgen upscale` through the real server: photos beyond the model's bounds go in tiles."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodgen import zoo
from prodgen.client import ProdgenClient
from prodgen.client.aio import AsyncProdgenClient
from prodgen.client.tiling import Tiling, tile_spans
from prodgen.errors import ProdgenError
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.export.verify import run_pytorch
from prodgen.model_repository.config import BatchingOptions
from prodgen.photos import fit, photograph
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.zoo.loading import serving_module
from tests_support import console_script, free_port

pytestmark = pytest.mark.e2e

UPSCALER = "srvgg-x2-small"


@pytest.fixture(scope="module")
def upscaler_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("upscale") / "models"
    export_model(ExportRequest(zoo.get(UPSCALER), repository, UPSCALER, batching=BatchingOptions(4)))
    options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server:
        yield server


def single_pass(image: np.ndarray) -> np.ndarray:
    model = zoo.get(UPSCALER)
    (output,) = run_pytorch(serving_module(model), model, {"input_image": image[np.newaxis]})
    return output[0]


def test_photo_larger_than_the_bounds_is_tiled_to_the_single_pass_result(upscaler_server: EmbeddedServer) -> None:
    bounds = zoo.get(UPSCALER).bounds
    assert bounds is not None
    photo = fit(photograph("rocket"), 200, bounds.max_side + 180)
    with ProdgenClient(upscaler_server.options.grpc_url) as client:
        tiled = client.upscale(UPSCALER, photo, tile=128, overlap=32)
    expected = single_pass(photo)
    assert tiled.shape == expected.shape == (400, 2 * (bounds.max_side + 180), 3)
    assert np.mean(np.abs(tiled.astype(int) - expected.astype(int)) <= 1) >= 0.999


def test_the_async_client_upscales_and_tiles_as_the_sync_client_does(upscaler_server: EmbeddedServer) -> None:
    bounds = zoo.get(UPSCALER).bounds
    assert bounds is not None
    large = fit(photograph("rocket"), 200, bounds.max_side + 180)
    small = fit(photograph("coffee"), 96, 128)

    async def upscale_both() -> tuple[np.ndarray, np.ndarray]:
        async with AsyncProdgenClient(upscaler_server.options.grpc_url) as client:
            return await asyncio.gather(
                client.upscale(UPSCALER, large, tile=128, overlap=32), client.upscale(UPSCALER, small)
            )

    tiled, single = asyncio.run(upscale_both())
    with ProdgenClient(upscaler_server.options.grpc_url) as client:
        assert np.array_equal(tiled, client.upscale(UPSCALER, large, tile=128, overlap=32))
        assert np.array_equal(single, client.upscale(UPSCALER, small))
    assert single.shape == (192, 256, 3) and tiled.shape == (400, 2 * (bounds.max_side + 180), 3)

    async def stylize_an_upscaler() -> np.ndarray:
        async with AsyncProdgenClient(upscaler_server.options.grpc_url) as client:
            return await client.stylize(UPSCALER, small)

    with pytest.raises(ProdgenError, match=f"model '{UPSCALER}' is an upscaler, not a style model"):
        asyncio.run(stylize_an_upscaler())


def test_upscale_cli_writes_pictures_twice_the_size(upscaler_server: EmbeddedServer, tmp_path: Path) -> None:
    photo = Path(__file__).parents[2] / "examples" / "photos" / "chelsea.jpg"
    result = subprocess.run(
        [
            console_script("prodgen"),
            "upscale",
            UPSCALER,
            str(photo),
            "--out",
            str(tmp_path),
            "--url",
            upscaler_server.options.grpc_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    width, height = Image.open(photo).size
    assert Image.open(tmp_path / "chelsea.png").size == (2 * width, 2 * height)


def test_generators_are_not_upscalers(upscaler_server: EmbeddedServer) -> None:
    with ProdgenClient(upscaler_server.options.grpc_url) as client:
        with pytest.raises(ProdgenError, match="is not a generator"):
            client.generate(UPSCALER)


def test_stylize_refuses_an_upscaler(upscaler_server: EmbeddedServer, tmp_path: Path) -> None:
    photo = Path(__file__).parents[2] / "examples" / "photos" / "chelsea.jpg"
    result = subprocess.run(
        [console_script("prodgen"), "stylize", UPSCALER, str(photo), "--out", str(tmp_path), "--url", upscaler_server.options.grpc_url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: model '{UPSCALER}' is an upscaler, not a style model; use `prodgen upscale`"
    )
    assert list(tmp_path.iterdir()) == []


def test_tiles_of_a_large_photo_report_progress_when_piped(upscaler_server: EmbeddedServer, tmp_path: Path) -> None:
    bounds = zoo.get(UPSCALER).bounds
    assert bounds is not None
    wide = tmp_path / "wide.png"
    Image.fromarray(fit(photograph("rocket"), 64, bounds.max_side + 100)).save(wide)
    result = subprocess.run(
        [console_script("prodgen"), "upscale", UPSCALER, str(wide), "--tile", "512", "--out", str(tmp_path / "big"),
         "--url", upscaler_server.options.grpc_url],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PRODGEN_PROGRESS_SECONDS": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tiles = [line for line in result.stderr.splitlines() if line.startswith(f"wide.png {bounds.max_side + 100}×64: ")]
    counts = [line.split(": ")[1].split(" (")[0] for line in tiles if "tiles (" in line]
    total = len(tile_spans(bounds.max_side + 100, Tiling(tile=512, overlap=32)))  # one row of tiles
    assert counts == [f"{min(done, total)}/{total} tiles" for done in range(4, total + 4, 4)]  # 4 a request
    assert f"upscale {UPSCALER}: 1/1 photos" in result.stderr
    assert Image.open(tmp_path / "big" / "wide.png").size == (2 * (bounds.max_side + 100), 128)
