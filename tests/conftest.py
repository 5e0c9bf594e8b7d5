"""Shared fixtures: a real exported repository and the real embedded Triton server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prodgen import zoo
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.model_repository.config import BatchingOptions
from prodgen.serve.server import EmbeddedServer, ServerOptions
from tests_support import free_port

SERVED_ZOO = ("dcgan", "fast-neural-style", "cyclegan")


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first three zoo models exported (seeded random weights), verified and published."""
    repository = tmp_path_factory.mktemp("repository") / "models"
    for name in SERVED_ZOO:
        export_model(ExportRequest(zoo.get(name), repository, name, batching=BatchingOptions(max_batch_size=4)))
    return repository


@pytest.fixture(scope="session")
def embedded_server(exported_repository: Path) -> Iterator[EmbeddedServer]:
    options = ServerOptions(exported_repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server:
        yield server


@pytest.fixture(scope="session")
def diffusion_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Stable-Diffusion save_pretrained folders: a text-to-image one and an inpainting one (9-channel UNet)."""
    from prodgen.zoo.stable_diffusion_random import write_random_checkpoint

    folder = tmp_path_factory.mktemp("diffusion-checkpoints")
    return {
        "sd": write_random_checkpoint(folder / "sd", seed=0),
        "sd_inpaint": write_random_checkpoint(folder / "sd-inpaint", inpainting=True, seed=1),
    }


@pytest.fixture(scope="session")
def diffusion_exports(diffusion_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Both tiny checkpoints exported (components verified) and published as pipelines `sd` and `sd_inpaint`,
    each with its restage model (`sd_restage`, `sd_inpaint_restage`)."""
    from prodgen.export.stable_diffusion import export_stable_diffusion

    repository = tmp_path_factory.mktemp("diffusion-repository") / "models"
    batching = BatchingOptions(max_batch_size=2)
    return {
        name: export_stable_diffusion(folder, repository, name, batching)
        for name, folder in diffusion_checkpoints.items()
    }


@pytest.fixture(scope="session")
def diffusion_server(diffusion_exports: dict) -> Iterator[EmbeddedServer]:
    from cutout_stand_in import publish_stand_ins

    repository = next(iter(diffusion_exports.values())).pipeline.model_dir.parent
    publish_stand_ins(repository)
    options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server:
        yield server
