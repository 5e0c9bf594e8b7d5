"""Restage from a photo, timed end to end: `prodgen-bench restage`.

    prodgen-bench restage --preset tiny --photo-side 1024 --steps 2 --repeats 3
    prodgen-bench restage --url localhost:8001 --model shop --cutout u2netp --photo-side 1024

Without `--url` it writes a random-weight checkpoint of the preset (or takes `--checkpoint`), exports it
with its restage model and serves it on the embedded Triton server. Each round times, interleaved so both
see the same machine load, the restage call from a photo-side² photo (one gRPC call: cutout or given
alpha, fitting, the pipeline's inpainting, compositing at the photo's size) and the pipeline's own
inpainting call at the size the restage model fits the photo to. What restage adds to the generation
(the photo's transport, the cutout, resizing and compositing) is the difference of the two medians.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prodgen.bench.stats import percentile
from prodgen.client import ProdgenClient, Sampling
from prodgen.client.diffusion import PictureFittedWarning
from prodgen.photos import photo_batch

PROMPT = "a product photo on a wooden table"
NAME = "sd_bench"


@dataclass
class RestageFigures:
    photo_side: int
    steps: int
    fitting: str
    restage_ms: list[float] = field(default_factory=list)
    """End to end: the restage call from the photo."""
    pipeline_ms: list[float] = field(default_factory=list)
    """The pipeline's inpainting alone, at the size the restage model fitted the photo to."""

    def summary(self) -> str:
        restage, pipeline = percentile(self.restage_ms, 50), percentile(self.pipeline_ms, 50)
        return (
            f"restage of a {self.photo_side}² photo, {self.steps} steps: median {restage:.0f} ms end to end "
            f"(p90 {percentile(self.restage_ms, 90):.0f} ms); the pipeline alone at the model's size "
            f"{pipeline:.0f} ms; restage adds {restage - pipeline:.0f} ms ({self.fitting})"
        )


def centred_alpha(height: int, width: int) -> np.ndarray:
    """A product matte for when no cutout model is named: an opaque ellipse over the middle third of the photo."""
    ys, xs = np.mgrid[0:height, 0:width]
    inside = ((ys - height / 2) / (height / 6)) ** 2 + ((xs - width / 2) / (width / 6)) ** 2 <= 1
    return np.where(inside, 255, 0).astype(np.uint8)[..., None]


def _timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - began)


def measure_restage(
    client: ProdgenClient, model: str, photo_side: int, steps: int, repeats: int, cutout: str | None
) -> RestageFigures:
    """Round 0 warms up and is not counted; then `repeats` rounds of restage and pipeline, interleaved."""
    warnings.simplefilter("ignore", PictureFittedWarning)  # the pipeline's inpainting note, every round
    photo = photo_batch(1, photo_side, photo_side)[0]
    given = photo if cutout else np.dstack([photo, centred_alpha(photo_side, photo_side)])
    sampling = Sampling(seed=0, steps=steps)
    first = client.restage(model, PROMPT, given, sampling, cutout, force=True)
    at_model = first.fitting.split(" at the model")[0].rsplit("→ ", 1)[-1]
    width, height = (int(part) for part in at_model.split("×"))
    small = photo_batch(1, height, width)[0]
    mask = 255 - centred_alpha(height, width)[..., 0]
    figures = RestageFigures(photo_side, steps, first.fitting)
    for round_index in range(repeats + 1):
        restage_ms = _timed(lambda: client.restage(model, PROMPT, given, sampling, cutout, force=True))
        pipeline_ms = _timed(lambda: client.inpaint(model, PROMPT, small, mask, sampling=sampling, fit=False))
        if round_index:
            figures.restage_ms.append(restage_ms)
            figures.pipeline_ms.append(pipeline_ms)
        print(f"round {round_index}: restage {restage_ms:.0f} ms, pipeline at the model's size {pipeline_ms:.0f} ms")
    return figures


def measure_local(
    checkpoint: Path, photo_side: int, steps: int, repeats: int, threads: int, cutout: str | None
) -> RestageFigures:
    """Export `checkpoint` with its restage model, serve it here, and measure."""
    from prodgen.export.stable_diffusion import export_stable_diffusion
    from prodgen.model_repository.config import BatchingOptions
    from prodgen.serve.options import free_port
    from prodgen.serve.server import EmbeddedServer, ServerOptions

    with tempfile.TemporaryDirectory(prefix="prodgen-bench-restage-") as work:
        repository = Path(work) / "models"
        export_stable_diffusion(checkpoint, repository, NAME, BatchingOptions(max_batch_size=1))
        options = ServerOptions(
            repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), intra_op_threads=threads
        )
        with EmbeddedServer(options) as server, ProdgenClient(server.options.grpc_url, timeout_s=3600) as client:
            return measure_restage(client, NAME, photo_side, steps, repeats, cutout)
