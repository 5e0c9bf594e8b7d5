"""The bench's `direct` runner: the published pipeline model and its ONNX files in one process, no Triton,
answering as the server does, so the bench can say what serving adds."""

from __future__ import annotations

import numpy as np

from prodgen.client import ProdgenClient, Sampling
from prodgen.model_repository.direct_pipeline import DirectPipeline
from prodgen.serve.server import EmbeddedServer


def test_direct_draws_the_served_picture(diffusion_exports: dict, diffusion_server: EmbeddedServer) -> None:
    repository = diffusion_exports["sd"].pipeline.model_dir.parent
    direct = DirectPipeline(repository, "sd", threads=1)
    prompt = "a red cup"
    with ProdgenClient(diffusion_server.options.grpc_url, timeout_s=300) as client:
        served = client.txt2img("sd", prompt, Sampling(seed=11, steps=3, guidance=5.0, scheduler="ddim"), 32, 32)[0]
    drawn = direct.picture(prompt, 11, 3, 5.0, "ddim", 32)[0]
    assert drawn.dtype == np.uint8 and drawn.shape == served.shape
    np.testing.assert_array_equal(drawn, served)
