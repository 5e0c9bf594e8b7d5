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
