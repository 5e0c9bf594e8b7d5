"""Bad requests sent straight to the real embedded server (tritonclient, no prodgen client checks):
each is refused with INVALID_ARGUMENT naming what was wrong, counted by Triton as a failed
request (`nv_inference_request_failure`, what an operator's alerts read), and the server stays up."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen.serve.server import EmbeddedServer

pytestmark = pytest.mark.e2e

PROMPT = "a red sneaker on a white table"


@pytest.fixture(scope="module")
def triton(diffusion_server: EmbeddedServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(diffusion_server.options.grpc_url)
    yield client
    client.close()


def request_inputs(arrays: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    inputs = []
    for name, array in arrays.items():
        dtype = "BYTES" if array.dtype == object else {"int64": "INT64", "float32": "FP32"}[str(array.dtype)]
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


def failures(server: EmbeddedServer, model: str) -> float:
    """`nv_inference_request_failure` of `model` from the server's metrics port (0 before any)."""
    url = f"http://{server.options.host}:{server.options.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as page:
        text = page.read().decode()
    pattern = rf'^nv_inference_request_failure\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} (\S+)$'
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


def test_refusals_count_as_failures_in_the_metrics(
    diffusion_server: EmbeddedServer, triton: grpcclient.InferenceServerClient
) -> None:
    before = {model: failures(diffusion_server, model) for model in ("sd", "sd_text_encoder")}
    refusal(triton, "sd", prompt_request(guidance=np.array([[-1.0]], np.float32)))
    refusal(triton, "sd", prompt_request(height=np.array([[0]], np.int64)))
    length = triton.get_model_config("sd_text_encoder").config.input[0].dims[0]
    refusal(triton, "sd_text_encoder", {"input_ids": np.full((1, length), -5, np.int64)})
    assert failures(diffusion_server, "sd") - before["sd"] == 2
    assert failures(diffusion_server, "sd_text_encoder") - before["sd_text_encoder"] == 1
    answered = triton.infer("sd", request_inputs(prompt_request()))
    assert answered.as_numpy("image").dtype == np.uint8
