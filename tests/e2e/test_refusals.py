"""Bad requests sent straight to the real embedded server (tritonclient, no prodgen client checks):
each is refused with INVALID_ARGUMENT naming what was wrong and counted on the metrics port
(`prodgen_request_refusals`: tritonserver 2.51's python backend counts error responses as
successes, serve/onnx_model.py says why), and the server stays up."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen.serve.server import EmbeddedServer

pytestmark = pytest.mark.e2e

PROMPT = "a red sneaker on a white table"
REFUSALS_METRIC = "prodgen_request_refusals"
"""The counter an operator's alerts read for refusals (the README names it)."""


@pytest.fixture(scope="module")
def triton(diffusion_server: EmbeddedServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(diffusion_server.options.grpc_url)
    yield client
    client.close()


def request_inputs(arrays: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    inputs = []
    for name, array in arrays.items():
        dtype = (
            "BYTES"
            if array.dtype == object
            else {"int64": "INT64", "float32": "FP32", "uint8": "UINT8"}[str(array.dtype)]
        )
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def refusal(client: grpcclient.InferenceServerClient, model: str, arrays: dict[str, np.ndarray]) -> str:
    """The server's refusal of one request: its status must be INVALID_ARGUMENT."""
    with pytest.raises(InferenceServerException) as refused:
        client.infer(model, request_inputs(arrays), client_timeout=120)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT", refused.value.message()
    return str(refused.value.message())


def prompt_request(**extra: np.ndarray) -> dict[str, np.ndarray]:
    return {"prompt": np.array([[PROMPT.encode()]], dtype=object), "steps": np.array([[1]], np.int64), **extra}


def refusals(server: EmbeddedServer, model: str) -> float:
    """`prodgen_request_refusals` of `model` from the server's metrics port (0 before any)."""
    url = f"http://{server.options.host}:{server.options.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as page:
        text = page.read().decode()
    pattern = rf'^{REFUSALS_METRIC}\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def test_a_zero_side_is_refused_not_replaced(triton: grpcclient.InferenceServerClient) -> None:
    message = refusal(triton, "sd", prompt_request(height=np.array([[0]], np.int64)))
    assert "height 0 pixels" in message
    message = refusal(triton, "sd", prompt_request(width=np.array([[0]], np.int64)))
    assert "width 0 pixels" in message


@pytest.mark.parametrize("name", ["guidance", "strength"])
def test_nan_is_named_as_not_a_finite_number(triton: grpcclient.InferenceServerClient, name: str) -> None:
    extra = {name: np.array([[np.nan]], np.float32)}
    if name == "strength":  # strength is read with a picture to re-draw
        extra["image"] = np.full((1, 32, 32, 3), 128, np.uint8)
    message = refusal(triton, "sd", prompt_request(**extra))
    assert f"input '{name}'" in message and "not a finite number" in message


def test_token_ids_beyond_the_vocabulary_are_refused(triton: grpcclient.InferenceServerClient) -> None:
    config = triton.get_model_config("sd_text_encoder").config
    declared = config.parameters["prodgen.range.input_ids"].string_value
    low, high = (int(float(v)) for v in declared.split(".."))
    length = config.input[0].dims[0]
    ids = np.full((1, length), high + 1, dtype=np.int64)
    message = refusal(triton, "sd_text_encoder", {"input_ids": ids})
    assert "input 'input_ids'" in message and f"{low}..{high}" in message
    ids[0, 0] = -1
    ids[0, 1:] = 0
    assert "input 'input_ids'" in refusal(triton, "sd_text_encoder", {"input_ids": ids})
    good = triton.infer("sd_text_encoder", request_inputs({"input_ids": np.zeros((1, length), np.int64)}))
    assert np.isfinite(good.as_numpy("text_states")).all()


def test_refusals_are_counted_on_the_metrics_port(
    diffusion_server: EmbeddedServer, triton: grpcclient.InferenceServerClient
) -> None:
    before = {model: refusals(diffusion_server, model) for model in ("sd", "sd_text_encoder")}
    refusal(triton, "sd", prompt_request(guidance=np.array([[-1.0]], np.float32)))
    refusal(triton, "sd", prompt_request(height=np.array([[0]], np.int64)))
    length = triton.get_model_config("sd_text_encoder").config.input[0].dims[0]
    refusal(triton, "sd_text_encoder", {"input_ids": np.full((1, length), -5, np.int64)})
    assert refusals(diffusion_server, "sd") - before["sd"] == 2
    assert refusals(diffusion_server, "sd_text_encoder") - before["sd_text_encoder"] == 1
    answered = triton.infer("sd", request_inputs(prompt_request()))
    assert answered.as_numpy("image").dtype == np.uint8


def test_an_oversize_picture_is_refused_and_its_memory_given_back(
    diffusion_server: EmbeddedServer, triton: grpcclient.InferenceServerClient
) -> None:
    """The short form of scripts/oversize_loop.py: one picture far beyond the encoder's bound."""
    side = 6144  # 108 MiB: past the server's 64 MiB bound on an instance's shared memory
    picture = np.full((1, side, side, 3), 128, np.uint8)
    message = refusal(triton, "sd_vae_encoder", {"image": picture})
    assert f"height {side} is outside the model's bounds" in message
    bound = diffusion_server.options.shm_release_bytes
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and max(size for _, size in diffusion_server.instance_memory().values()) > bound:
        time.sleep(0.25)
    assert max(size for _, size in diffusion_server.instance_memory().values()) <= bound
    assert any("sd_vae_encoder: a model instance holds" in event for event in diffusion_server.events)
    encoded = triton.infer("sd_vae_encoder", request_inputs({"image": np.full((1, 32, 32, 3), 128, np.uint8)}))
    assert np.isfinite(encoded.as_numpy("latents")).all()
