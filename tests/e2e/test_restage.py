"""Restage from a real photo in one gRPC call: the served restage model, through bare tritonclient and the CLI.

The photo is examples/photos/coffee.jpg (512×341), larger than the tiny pipelines' bounds (4..64) and the
cutout stand-in's (16..256), so every fitting step runs. The cutout model is tests/cutout_stand_in.py,
served beside the pipelines under the cutout contract.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from cutout_stand_in import CUTOUT_STAND_IN, UPSCALER_STAND_IN
from PIL import Image
from tritonclient.utils import InferenceServerException

from prodgen.client.images import read_image
from prodgen.serve.server import EmbeddedServer
from tests_support import console_script

pytestmark = pytest.mark.e2e

PHOTO = Path(__file__).parents[2] / "examples" / "photos" / "coffee.jpg"
PROMPT = "a coffee cup on a wooden table"


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    photo = read_image(PHOTO)
    assert photo.shape == (341, 512, 3)
    return photo


@pytest.fixture(scope="module")
def triton(diffusion_server: EmbeddedServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(diffusion_server.options.grpc_url)
    yield client
    client.close()


def tensor(name: str, array: np.ndarray, dtype: str) -> grpcclient.InferInput:
    value = grpcclient.InferInput(name, list(array.shape), dtype)
    value.set_data_from_numpy(array)
    return value


def restage_call(
    triton: grpcclient.InferenceServerClient, photo: np.ndarray, **extra: tuple[np.ndarray, str]
) -> dict[str, np.ndarray]:
    """One bare tritonclient request to `sd_restage`, as a shop without prodgen would send it."""
    inputs = [
        tensor("photo", photo[None], "UINT8"),
        tensor("prompt", np.array([[PROMPT.encode()]], dtype=object), "BYTES"),
        tensor("seed", np.array([[7]], dtype=np.int64), "INT64"),
        tensor("steps", np.array([[2]], dtype=np.int64), "INT64"),
        *(tensor(name, array, dtype) for name, (array, dtype) in extra.items()),
    ]
    outputs = [grpcclient.InferRequestedOutput(name) for name in ("image", "matte", "fitting")]
    result = triton.infer("sd_restage", inputs, outputs=outputs, client_timeout=300)
    return {name: result.as_numpy(name) for name in ("image", "matte", "fitting")}


def name_input(value: str) -> tuple[np.ndarray, str]:
    return np.array([[value.encode()]], dtype=object), "BYTES"


def test_restage_of_a_photo_keeps_every_opaque_pixel_at_the_photo_size(
    triton: grpcclient.InferenceServerClient, coffee: np.ndarray
) -> None:
    result = restage_call(triton, coffee, cutout_model=name_input(CUTOUT_STAND_IN))
    image, matte = result["image"][0], result["matte"][0]
    assert image.shape == (341, 512, 3) and matte.shape == (341, 512, 1)
    opaque = matte[..., 0] == 255
    background = matte[..., 0] == 0
    assert opaque.mean() > 0.05 and background.mean() > 0.5, "the stand-in's ellipse is the product"
    np.testing.assert_array_equal(image[opaque], coffee[opaque])
    assert np.abs(image[background].astype(int) - coffee[background]).mean() > 10, "the background was replaced"
    fitting = result["fitting"].reshape(-1)[0].decode()
    print(fitting)
    assert fitting.startswith(f"photo 512×341 (matte by {CUTOUT_STAND_IN} at 256×170")
    assert "→ 64×44 at the model" in fitting


def test_restage_with_an_upscaler_upscales_the_background(
    triton: grpcclient.InferenceServerClient, coffee: np.ndarray
) -> None:
    result = restage_call(
        triton, coffee, cutout_model=name_input(CUTOUT_STAND_IN), upscaler=name_input(UPSCALER_STAND_IN)
    )
    image, matte = result["image"][0], result["matte"][0]
    assert image.shape == coffee.shape
    opaque = matte[..., 0] == 255
    np.testing.assert_array_equal(image[opaque], coffee[opaque])
    assert f"background upscaled ×2 by {UPSCALER_STAND_IN}" in result["fitting"].reshape(-1)[0].decode()


def refusal(triton: grpcclient.InferenceServerClient, photo: np.ndarray, **extra: tuple[np.ndarray, str]) -> str:
    with pytest.raises(InferenceServerException) as caught:
        restage_call(triton, photo, **extra)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value
    return str(caught.value.message())


def test_bad_restage_requests_are_invalid_arguments_and_the_server_stays_up(
    triton: grpcclient.InferenceServerClient, coffee: np.ndarray
) -> None:
    cutout = {"cutout_model": name_input(CUTOUT_STAND_IN)}
    assert "at most 4096 pixels a side" in refusal(triton, np.zeros((4100, 8, 3), np.uint8), **cutout)
    small_alpha = np.full((1, 200, 300, 1), 255, np.uint8)
    assert "input 'alpha'" in refusal(triton, coffee, alpha=(small_alpha, "UINT8"))
    assert "no model 'no_such_cutout'" in refusal(triton, coffee, cutout_model=name_input("no_such_cutout"))
    assert "model 'sd' is not a cutout model" in refusal(triton, coffee, cutout_model=name_input("sd"))
    not_upscaler = {"upscaler": name_input(CUTOUT_STAND_IN)}
    assert f"'{CUTOUT_STAND_IN}' is not an upscale model" in refusal(triton, coffee, **cutout, **not_upscaler)
    speck = np.zeros((1, 341, 512, 1), np.uint8)
    speck[0, 10:20, 10:20] = 255
    assert "the product covers 0.06% of the photo" in refusal(triton, coffee, alpha=(speck, "UINT8"))
    assert triton.is_server_live() and triton.is_model_ready("sd_restage")
    forced = restage_call(triton, coffee, alpha=(speck, "UINT8"), force=(np.array([[True]]), "BOOL"))
    assert "forced past: the product covers 0.06% of the photo" in forced["fitting"].reshape(-1)[0].decode()


def run_cli(server: EmbeddedServer, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [console_script("prodgen"), "restage", "sd", PROMPT, *arguments, "--steps", "2"]
    return subprocess.run([*command, "--url", server.options.grpc_url], capture_output=True, text=True, timeout=300)


def test_cli_restages_a_photo_with_a_cutout_model_or_an_rgba_cutout(
    diffusion_server: EmbeddedServer, coffee: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / "restaged.png"
    done = run_cli(diffusion_server, str(PHOTO), "--cutout", CUTOUT_STAND_IN, "--out", str(out))
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    assert "fitting: photo 512×341" in done.stdout
    assert np.asarray(Image.open(out)).shape == (341, 512, 3)

    alpha = np.zeros((341, 512), dtype=np.uint8)
    alpha[120:330, 220:420] = 255
    cutout = tmp_path / "cutout.png"
    Image.fromarray(np.dstack([coffee, alpha])).save(cutout)
    done = run_cli(diffusion_server, str(cutout), "--out", str(out))
    assert done.returncode == 0, done.stderr
    restaged = np.asarray(Image.open(out))
    np.testing.assert_array_equal(restaged[alpha == 255], coffee[alpha == 255])

    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_text("not a picture")
    refused = run_cli(diffusion_server, str(not_a_picture), "--cutout", CUTOUT_STAND_IN, "--out", str(out))
    assert refused.returncode == 2 and "not an image file" in refused.stderr and "Traceback" not in refused.stderr
    refused = run_cli(diffusion_server, str(PHOTO), "--out", str(out))
    assert refused.returncode == 2 and "--cutout" in refused.stderr
