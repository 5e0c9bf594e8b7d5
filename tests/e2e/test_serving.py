"""The real embedded Triton server, called over gRPC, against PyTorch's own outputs."""

from __future__ import annotations

import asyncio
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen import zoo
from prodgen.client import ProdgenClient
from prodgen.client.aio import AsyncProdgenClient
from prodgen.errors import ProdgenError
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.export.verify import run_pytorch
from prodgen.model_repository.config import BatchingOptions
from prodgen.photos import photo_batch
from prodgen.seeding import latents_from_seed
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.zoo.loading import serving_module
from tests_support import free_port

pytestmark = pytest.mark.e2e


def fraction_within_one_level(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return float(np.mean(np.abs(a.astype(int) - b.astype(int)) <= 1))


def reference(name: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    model = zoo.get(name)
    (output,) = run_pytorch(serving_module(model), model, inputs)
    return output


def test_served_models_are_the_exported_ones(embedded_server: EmbeddedServer) -> None:
    with ProdgenClient(embedded_server.options.grpc_url) as client:
        health = client.health()
        assert health.live and health.ready
        served = {model.name: model for model in client.models()}
    assert set(served) == {"dcgan", "fast-neural-style", "cyclegan"}
    for name, model in served.items():
        entry = zoo.get(name)
        assert [s.name for s in model.inputs] == [s.name for s in entry.inputs]
        assert [s.name for s in model.outputs] == [s.name for s in entry.outputs]
        assert model.max_batch_size == 4
        assert model.task == entry.task


def test_generator_served_output_matches_pytorch_and_splits_large_batches(embedded_server: EmbeddedServer) -> None:
    with ProdgenClient(embedded_server.options.grpc_url) as client:
        served = client.generate("dcgan", seed=11, count=6)
    expected = reference("dcgan", {"z": latents_from_seed(11, 6, 100)})
    assert fraction_within_one_level(served, expected) >= 0.999


@pytest.mark.parametrize("name", ["fast-neural-style", "cyclegan"])
def test_image_model_served_output_matches_pytorch(embedded_server: EmbeddedServer, name: str) -> None:
    photos = photo_batch(2, 96, 128)
    with ProdgenClient(embedded_server.options.grpc_url) as client:
        served = client.stylize(name, photos)
    expected = reference(name, {"input_image": photos})
    assert fraction_within_one_level(served, expected) >= 0.999


def test_concurrent_requests_are_batched_without_mixing_results(embedded_server: EmbeddedServer) -> None:
    photos = [photo_batch(1, 64, 64, offset=i)[0] for i in range(4)]
    photos += [np.ascontiguousarray(photo[::-1]) for photo in photos]
    with ProdgenClient(embedded_server.options.grpc_url) as client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            served = list(pool.map(lambda p: client.stylize("fast-neural-style", p), photos))
    expected = reference("fast-neural-style", {"input_image": np.stack(photos)})
    for got, want in zip(served, expected, strict=True):
        assert fraction_within_one_level(got, want) >= 0.999


def test_asyncio_callers_stylize_concurrently_without_mixing_results(embedded_server: EmbeddedServer) -> None:
    photos = [photo_batch(1, 64, 64, offset=i)[0] for i in range(4)]

    async def stylize_all() -> list[np.ndarray]:
        async with AsyncProdgenClient(embedded_server.options.grpc_url) as client:
            singles = asyncio.gather(*(client.stylize("fast-neural-style", photo) for photo in photos))
            return [*await singles, await client.stylize("fast-neural-style", np.stack(photos))]

    *served, batch = asyncio.run(stylize_all())
    expected = reference("fast-neural-style", {"input_image": np.stack(photos)})
    assert batch.shape == expected.shape and fraction_within_one_level(batch, expected) >= 0.999
    for got, want in zip(served, expected, strict=True):
        assert got.shape == want.shape and fraction_within_one_level(got, want) >= 0.999


def test_bad_requests_get_clear_errors_and_the_server_stays_up(embedded_server: EmbeddedServer) -> None:
    raw = grpcclient.InferenceServerClient(embedded_server.options.grpc_url)
    tiny = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    request = grpcclient.InferInput("input_image", list(tiny.shape), "UINT8")
    request.set_data_from_numpy(tiny)
    with pytest.raises(
        InferenceServerException, match=r"input 'input_image': height 16 is outside the model's bounds 64\.\.2048"
    ):
        raw.infer("cyclegan", [request])
    floats = np.zeros((1, 64, 64, 3), dtype=np.float32)
    wrong_dtype = grpcclient.InferInput("input_image", list(floats.shape), "FP32")
    wrong_dtype.set_data_from_numpy(floats)
    with pytest.raises(InferenceServerException, match="input_image"):
        raw.infer("cyclegan", [wrong_dtype])
    raw.close()
    with ProdgenClient(embedded_server.options.grpc_url) as client:
        with pytest.raises(ProdgenError, match="outside the model's bounds"):
            client.stylize("cyclegan", tiny[0])
        assert client.generate("dcgan", seed=0, count=1).shape == (1, 64, 64, 3)
        assert client.health().ready


def test_a_version_published_while_serving_is_picked_up(exported_repository: Path, tmp_path: Path) -> None:
    repository = tmp_path / "models"
    shutil.copytree(exported_repository / "dcgan", repository / "dcgan")
    options = ServerOptions(
        repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), poll_interval_s=1
    )
    with EmbeddedServer(options) as server:
        export_model(ExportRequest(zoo.get("dcgan"), repository, "dcgan", seed=9, batching=BatchingOptions(4)))
        server.sync()
        raw = grpcclient.InferenceServerClient(options.grpc_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not raw.is_model_ready("dcgan", "2"):
            time.sleep(0.5)
        assert raw.is_model_ready("dcgan", "2")
        assert "dcgan: now serving version 2 (was 1)" in server.events
        with ProdgenClient(options.grpc_url) as client:
            served = client.generate("dcgan", seed=1, count=2)
        raw.close()
    model = zoo.get("dcgan")
    (expected,) = run_pytorch(serving_module(model, seed=9), model, {"z": latents_from_seed(1, 2, 100)})
    assert fraction_within_one_level(served, expected) >= 0.999
