"""Helpers shared by the tests (importable as `tests_support`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from prodgen.serve.server import EmbeddedServer, free_port

if TYPE_CHECKING:
    from prodgen.model_repository.config import BatchingOptions

__all__ = ["all_running", "console_script", "free_port", "write_sd_pipeline_config"]


def console_script(name: str) -> str:
    """The installed console script of this environment, as a user would run it."""
    return str(Path(sys.executable).parent / name)


@contextmanager
def all_running(servers: list[EmbeddedServer]) -> Iterator[list[EmbeddedServer]]:
    """Start every server in turn; stop each one on the way out, also when a start fails."""
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def write_sd_pipeline_config(
    repository: Path, name: str, batching: BatchingOptions, components: str | None = None, preview: str | None = None
) -> None:
    """An SD-1.5-shaped pipeline `name`'s config (components `<components or name>_<part>`), as the export writes
    it; `preview`: a preview pipeline's, decoding with that model."""
    from prodgen.model_repository.pipeline_components import PARTS
    from prodgen.model_repository.stable_diffusion import PipelineFacts, pipeline_config_text  # imports torch
    from prodgen.zoo.stable_diffusion_preview import PREVIEW_NOTE

    facts = PipelineFacts(
        component_models={
            part: preview if preview and part == "vae_decoder" else f"{components or name}_{part}" for part in PARTS
        },
        text_length=77,
        latent_channels=4,
        unet_in_channels=4,
        vae_scale_factor=8,
        size_multiple=64,
        min_side=64,
        max_side=1024,
        opt_side=512,
        preview_decoder=PREVIEW_NOTE if preview else "",
    )
    (repository / name).mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(pipeline_config_text(name, facts, batching))
