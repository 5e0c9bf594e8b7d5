"""`prodgen batch` for the diffusion tasks (txt2img, img2img, restage) on the tiny served pipelines:
each row's output is what the client's own call gives for that row's prompt, seed and overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prodgen.client import ProdgenClient, Sampling
from prodgen.client.batch import BatchJob, Connection, run_batch
from prodgen.client.batch.journal import read_results
from prodgen.client.images import read_image, write_image
from prodgen.photos import photo_batch
from prodgen.serve.server import EmbeddedServer

pytestmark = pytest.mark.e2e

SIDE = 32
PROMPT = "a studio photo of a red sneaker on a white table"


def _job(tmp_path: Path, server: EmbeddedServer, task: str, model: str, text: str) -> BatchJob:
    (tmp_path / f"{task}.csv").write_text(text)
    connection = Connection((server.options.grpc_url,))
    return BatchJob(tmp_path / f"{task}.csv", task, model, tmp_path / task, connection, concurrency=2)


def test_diffusion_rows_get_the_pictures_of_their_own_prompt_seed_and_settings(
    diffusion_server: EmbeddedServer, tmp_path: Path
) -> None:
    photos = photo_batch(2, SIDE, SIDE, offset=1)
    for index, photo in enumerate(photos):
        write_image(tmp_path / f"photo{index}.png", photo)
    alpha = np.zeros((SIDE, SIDE), dtype=np.uint8)
    alpha[8:24, 10:22] = 255
    write_image(tmp_path / "cutout.png", np.dstack([photos[0], alpha]))

    txt2img = run_batch(
        _job(
            tmp_path,
            diffusion_server,
            "txt2img",
            "sd",
            f"id,prompt,seed,steps,height,width\nA,{PROMPT},5,2,{SIDE},{SIDE}\nB,a blue mug,6,2,{SIDE},{SIDE}\nC,,7,2,,\n",
        )
    )
    img2img = run_batch(
        _job(
            tmp_path,
            diffusion_server,
            "img2img",
            "sd",
            f"id,image,prompt,seed,steps,strength\nP,photo1.png,{PROMPT},3,2,0.6\n",
        )
    )
    restage = run_batch(
        _job(
            tmp_path,
            diffusion_server,
            "restage",
            "sd_inpaint",
            "id,image,prompt,seed,steps\nR,cutout.png,a kitchen,1,2\n",
        )
    )

    assert (txt2img.done, txt2img.bad, img2img.done, restage.done) == (2, 1, 1, 1)
    reasons = {row["id"]: row["error"] for row in read_results(txt2img.results)}
    assert "needs a prompt" in reasons["C"]
    with ProdgenClient(diffusion_server.options.grpc_url) as client:
        expected = {
            tmp_path / "txt2img" / "A.png": client.txt2img("sd", PROMPT, Sampling(seed=5, steps=2), SIDE, SIDE)[0],
            tmp_path / "txt2img" / "B.png": client.txt2img("sd", "a blue mug", Sampling(seed=6, steps=2), SIDE, SIDE)[
                0
            ],
            tmp_path / "img2img" / "P.png": client.img2img("sd", PROMPT, photos[1], 0.6, Sampling(seed=3, steps=2))[0],
            tmp_path / "restage" / "R.png": client.restage(
                "sd_inpaint", "a kitchen", np.dstack([photos[0], alpha]), Sampling(seed=1, steps=2)
            ).images[0],
        }
    for path, picture in expected.items():
        np.testing.assert_array_equal(read_image(path), picture, err_msg=str(path))
