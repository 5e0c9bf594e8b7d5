"""The embedded server under faults and bad input, as an operator meets them in the first week.

One real server (explicit model control, supervisor on, repository polled every second)
serves a conditional generator at max batch 8 and an upscaler; the tests run against it in
order: every bad request refused, many concurrent requests all correct, a killed model
instance brought back, a broken version beside a working one, overload shed, a drain.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen import zoo
from prodgen.bench.load import ClosedLoop, Endpoint, OpenLoop, RequestLog
from prodgen.client import ProdgenClient
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.model_repository.config import BatchingOptions
from prodgen.photos import photo_batch
from prodgen.seeding import latents_from_seed
from prodgen.serve.model_control import stub_processes
from prodgen.serve.processes import process_info
from prodgen.serve.server import EmbeddedServer, ServerOptions
from tests_support import free_port

pytestmark = pytest.mark.e2e

GENERATOR = "catalogue"  # catalogue-dcgan: ngf 16, six classes, so thousands of requests take seconds
UPSCALER = "upscaler"  # srvgg-x2-small
CLASSES = 6


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("reliability") / "models"
    # One instance each: the tests kill, and watch the memory of, a model's single stub process.
    batching = BatchingOptions(max_batch_size=8, instance_count=1)
    for zoo_name, served in (("catalogue-dcgan", GENERATOR), ("srvgg-x2-small", UPSCALER)):
        export_model(ExportRequest(zoo.get(zoo_name), repository, served, batching=batching))
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[EmbeddedServer]:
    options = ServerOptions(
        repository,
        grpc_port=free_port(),
        http_port=free_port(),
        metrics_port=free_port(),
        poll_interval_s=1,
        log_file=repository.parent / "tritonserver.log",
    )
    server = EmbeddedServer(options).start()
    try:
        yield server
    finally:
        prefix = server._shm_prefix
        server.stop()
        assert list(Path("/dev/shm").glob(f"{prefix}*")) == [], "shared memory left behind"


def test_each_model_is_loaded_once_at_start_and_the_log_says_so(server: EmbeddedServer) -> None:
    time.sleep(2.5)  # two polls of an unchanged repository load nothing again
    log = server.log_path.read_text()
    assert log.count(f"successfully loaded '{GENERATOR}'") == 1
    assert log.count(f"successfully loaded '{UPSCALER}'") == 1
    assert f"(log: {server.log_path})" in log


def tensor(name: str, array: np.ndarray, dtype: str) -> grpcclient.InferInput:
    item = grpcclient.InferInput(name, list(array.shape), dtype)
    item.set_data_from_numpy(array)
    return item


def generator_inputs(z: np.ndarray, class_id: np.ndarray) -> list[grpcclient.InferInput]:
    return [tensor("z", z, "FP32"), tensor("class_id", class_id, "INT64")]


def good_latent() -> np.ndarray:
    return latents_from_seed(0, 1, 100)


def assert_still_serving(raw: grpcclient.InferenceServerClient) -> None:
    result = raw.infer(GENERATOR, generator_inputs(good_latent(), np.zeros((1, 1), np.int64)), client_timeout=30)
    assert result.as_numpy("output_image").shape == (1, 64, 64, 3)
    assert raw.is_server_ready()


def nan_latent() -> np.ndarray:
    z = good_latent()
    z[0, 3] = np.nan
    return z


def inf_latent() -> np.ndarray:
    z = good_latent()
    z[0, 0] = -np.inf
    return z


BAD_GENERATOR_REQUESTS = {
    "NaN latent": (nan_latent, 0, r"input 'z': contains NaN or Inf"),
    "Inf latent": (inf_latent, 0, r"input 'z': contains NaN or Inf"),
    "class id too large": (good_latent, CLASSES, r"input 'class_id': 6 is outside the allowed range 0\.\.5"),
    "negative class id": (good_latent, -1, r"input 'class_id': -1 is outside the allowed range 0\.\.5"),
}


@pytest.mark.parametrize("case", list(BAD_GENERATOR_REQUESTS), ids=list(BAD_GENERATOR_REQUESTS))
def test_bad_generator_inputs_are_invalid_argument_naming_the_input(server: EmbeddedServer, case: str) -> None:
    latent, class_id, message = BAD_GENERATOR_REQUESTS[case]
    raw = grpcclient.InferenceServerClient(server.options.grpc_url)
    with pytest.raises(InferenceServerException, match=message) as refused:
        raw.infer(GENERATOR, generator_inputs(latent(), np.full((1, 1), class_id, np.int64)), client_timeout=30)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert_still_serving(raw)
    raw.close()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 2100, 40, 3), r"input 'input_image': height 2100 is outside the model's bounds 16\.\.2048"),
        ((1, 8, 64, 3), r"input 'input_image': height 8 is outside the model's bounds 16\.\.2048"),
    ],
    ids=["too large", "too small"],
)
def test_images_outside_the_bounds_are_refused_from_their_shape(
    server: EmbeddedServer, shape: tuple[int, ...], message: str
) -> None:
    raw = grpcclient.InferenceServerClient(server.options.grpc_url)
    with pytest.raises(InferenceServerException, match=message) as refused:
        raw.infer(UPSCALER, [tensor("input_image", np.zeros(shape, np.uint8), "UINT8")], client_timeout=30)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert_still_serving(raw)
    raw.close()


def test_malformed_requests_get_clear_statuses(server: EmbeddedServer) -> None:
    raw = grpcclient.InferenceServerClient(server.options.grpc_url)
    wrong_dtype = [
        tensor("z", good_latent().astype(np.float64), "FP64"),
        tensor("class_id", np.zeros((1, 1), np.int64), "INT64"),
    ]
    missing = [tensor("z", good_latent(), "FP32")]
    wrong_shape = generator_inputs(np.zeros((1, 7), np.float32), np.zeros((1, 1), np.int64))
    for inputs, status in (
        (wrong_dtype, "INVALID_ARGUMENT"),
        (missing, "INVALID_ARGUMENT"),
        (wrong_shape, "INVALID_ARGUMENT"),
    ):
        with pytest.raises(InferenceServerException) as refused:
            raw.infer(GENERATOR, inputs, client_timeout=30)
        assert refused.value.status() == f"StatusCode.{status}"
        assert_still_serving(raw)
    with pytest.raises(InferenceServerException) as unknown:
        raw.infer("no-such-model", generator_inputs(good_latent(), np.zeros((1, 1), np.int64)), client_timeout=30)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert_still_serving(raw)
    raw.close()


def expected_pictures(repository: Path, count: int) -> np.ndarray:
    """What the generator must answer for latent seed j and class j % 6, straight from ONNX Runtime."""
    session = ort.InferenceSession(str(repository / GENERATOR / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    z = np.concatenate([latents_from_seed(j, 1, 100) for j in range(count)])
    classes = (np.arange(count) % CLASSES).reshape(-1, 1).astype(np.int64)
    return session.run(["output_image"], {"z": z, "class_id": classes})[0]


def test_ten_thousand_concurrent_requests_are_all_answered_correctly(server: EmbeddedServer, repository: Path) -> None:
    total, concurrency, distinct = 10_000, 16, 128
    expected = expected_pictures(repository, distinct)
    inputs = [
        generator_inputs(latents_from_seed(j, 1, 100), np.full((1, 1), j % CLASSES, np.int64)) for j in range(distinct)
    ]
    wrong, errors = Counter[int](), Counter[str]()

    def worker(first: int) -> None:
        raw = grpcclient.InferenceServerClient(server.options.grpc_url)
        for request in range(first, total, concurrency):
            j = request % distinct
            try:
                got = raw.infer(GENERATOR, inputs[j], client_timeout=60).as_numpy("output_image")[0]
            except InferenceServerException as error:
                errors[error.status() or "error"] += 1
                continue
            if np.abs(got.astype(int) - expected[j].astype(int)).max() > 1:
                wrong[j] += 1
        raw.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    seconds = time.perf_counter() - started
    print(
        f"{total} requests at c={concurrency}: {seconds:.1f} s, {total / seconds:.0f} req/s, "
        f"{sum(wrong.values())} wrong, {sum(errors.values())} errors"
    )
    assert sum(errors.values()) == 0, errors
    assert sum(wrong.values()) == 0, wrong


def test_a_killed_model_instance_is_reloaded_and_health_is_false_meanwhile(server: EmbeddedServer) -> None:
    assert server._process is not None
    (stub,) = stub_processes(server._process.pid, server._mirror_dir)[(GENERATOR, 1)]
    raw = grpcclient.InferenceServerClient(server.options.grpc_url)
    os.kill(stub, signal.SIGKILL)
    killed = time.monotonic()
    seen_not_ready = False
    while time.monotonic() - killed < 60:
        ready = raw.is_model_ready(GENERATOR)
        seen_not_ready |= not ready
        if seen_not_ready and ready:
            break
        time.sleep(0.02)
    back_after = time.monotonic() - killed
    assert seen_not_ready, "the model should report not ready while its instance is down"
    assert_still_serving(raw)
    print(f"killed instance: model ready again and answering {back_after:.1f} s after SIGKILL")
    assert any("died; reloading" in event for event in server.events)
    assert any(f"{GENERATOR}: serving again" in event for event in server.events)
    assert process_info(stub) is None or not process_info(stub).running  # type: ignore[union-attr]
    raw.close()


def test_a_broken_version_beside_a_working_one_leaves_the_server_ready(
    server: EmbeddedServer, repository: Path
) -> None:
    good = repository / GENERATOR / "1" / "model.onnx"
    staging = repository / GENERATOR / ".staging-broken"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    staging.rename(repository / GENERATOR / "2")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(f"{GENERATOR}/2: not served" in e for e in server.events):
            time.sleep(0.2)
        assert any(f"{GENERATOR}/2: not served" in e for e in server.events), server.events
        time.sleep(2.5)  # two more polls: nothing retries the broken version or turns the server not ready
        with ProdgenClient(server.options.grpc_url) as client:
            health = client.health()
        assert health.ready and health.models_ready == {GENERATOR: True, UPSCALER: True}
        raw = grpcclient.InferenceServerClient(server.options.grpc_url)
        assert raw.is_model_ready(GENERATOR, "1")
        assert_still_serving(raw)
        raw.close()
    finally:
        shutil.rmtree(repository / GENERATOR / "2")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_overload_is_shed_with_clear_errors_memory_stays_bounded_and_the_server_recovers(
    server: EmbeddedServer,
) -> None:
    served = ProdgenClient(server.options.grpc_url).model(UPSCALER)
    endpoint = Endpoint(server.options.grpc_url, UPSCALER, served.inputs, served.outputs, timeout_s=30)
    payloads = [{"input_image": photo_batch(1, 96, 96, offset=i)} for i in range(4)]
    raw = grpcclient.InferenceServerClient(server.options.grpc_url)
    request = [tensor("input_image", payloads[0]["input_image"], "UINT8")]
    for _ in range(3):
        raw.infer(UPSCALER, request, client_timeout=30)
    assert server._process is not None
    (stub,) = stub_processes(server._process.pid, server._mirror_dir)[(UPSCALER, 1)]
    idle_kb, stub_idle_kb = rss_kb(server._process.pid), rss_kb(stub)
    capacity_log = RequestLog(max_requests=1_000_000)
    saturating = ClosedLoop(endpoint, payloads, concurrency=2 * served.max_batch_size)  # a batch runs, one waits
    saturating.start(capacity_log)
    time.sleep(4)
    saturating.stop()
    saturating.join()
    capacity = capacity_log.completed / capacity_log.now()  # what it answers at saturation (some may time out)
    assert capacity > 0, capacity_log.error_messages

    log = RequestLog(max_requests=1_000_000)
    load = OpenLoop(endpoint, payloads, rate=5 * capacity, arrival="constant", max_in_flight=100_000)
    peak_kb, stub_peak_kb, stop = idle_kb, stub_idle_kb, threading.Event()

    def watch_memory() -> None:
        nonlocal peak_kb, stub_peak_kb
        while not stop.wait(0.1):
            peak_kb = max(peak_kb, rss_kb(server._process.pid))  # type: ignore[union-attr]
            stub_peak_kb = max(stub_peak_kb, rss_kb(stub))

    watcher = threading.Thread(target=watch_memory)
    watcher.start()
    load.start(log)
    time.sleep(20)
    load.stop()
    load.join()
    stop.set()
    watcher.join()
    statuses = {message.split(":")[0] for message in log.error_messages}
    print(
        f"overload: capacity {capacity:.1f} req/s, offered {5 * capacity:.1f} req/s for 20 s: sent {log.sent}, "
        f"answered {log.completed}, refused {log.errors} ({dict(log.error_messages)}); tritonserver RSS idle "
        f"{idle_kb / 1024:.1f} MB, peak {peak_kb / 1024:.1f} MB; model process RSS idle {stub_idle_kb / 1024:.1f} MB, "
        f"peak {stub_peak_kb / 1024:.1f} MB"
    )
    assert log.errors > 0 and log.completed > 0
    assert statuses <= {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"}, log.error_messages
    assert peak_kb < 2 * idle_kb
    assert raw.infer(UPSCALER, request, client_timeout=30).as_numpy("output_image").shape == (1, 192, 192, 3)
    assert raw.is_server_ready()
    raw.close()
