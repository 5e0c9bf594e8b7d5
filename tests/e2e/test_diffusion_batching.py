"""Concurrent pictures on the served pipeline: they share UNet calls, and the server's memory stays put.

The tiny checkpoint is exported with the pipeline's default batching (4 pipeline instances, one
instance per component) and served on the real embedded Triton; the figures are Triton's own
statistics (executions and inferences of the UNet) and the resident memory of tritonserver with
its python-backend stubs, never wall-clock times.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from prodgen.bench.peers.launch import tree_rss_mb
from prodgen.bench.triton_stats import StatisticsReader, difference
from prodgen.client import ProdgenClient, Sampling
from prodgen.export.stable_diffusion import DEFAULT_PIPELINE_BATCHING, UNET_QUEUE_DELAY_US, export_stable_diffusion
from prodgen.model_repository.config import parse_pbtxt
from prodgen.model_repository.publish import CONFIG_FILE
from prodgen.serve.processes import listener_pid
from prodgen.serve.server import EmbeddedServer, ServerOptions
from tests_support import free_port

pytestmark = pytest.mark.e2e

NAME = "sd_batched"
PROMPT = "a studio photo of a red sneaker on a white table"
SIDE = 32
STEPS = 6
PICTURES = 8
CONCURRENCY = 4


@dataclass(frozen=True)
class Served:
    server: EmbeddedServer
    url: str
    repository: Path


@pytest.fixture(scope="module")
def batched_server(
    diffusion_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    repository = tmp_path_factory.mktemp("diffusion-batching") / "models"
    export_stable_diffusion(diffusion_checkpoints["sd"], repository, NAME)  # the default batching, as users get it
    options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server:
        yield Served(server, options.grpc_url, repository)


def test_published_configs_batch_in_the_unet_with_one_copy_of_each_component(batched_server: Served) -> None:
    configs = {
        name: parse_pbtxt((batched_server.repository / name / CONFIG_FILE).read_text())
        for name in (NAME, f"{NAME}_text_encoder", f"{NAME}_unet", f"{NAME}_vae_decoder", f"{NAME}_vae_encoder")
    }
    pipeline = configs.pop(NAME)
    assert not pipeline.HasField("dynamic_batching")  # one request an instance: none waits behind another
    assert sum(group.count for group in pipeline.instance_group) == DEFAULT_PIPELINE_BATCHING.instance_count
    for name, config in configs.items():
        assert sum(group.count for group in config.instance_group) == 1, name
        assert config.max_batch_size == 2 * DEFAULT_PIPELINE_BATCHING.instance_count, name  # every picture's pair
        assert config.parameters["memory.enable_memory_arena_shrinkage"].string_value == "cpu:0", name
    assert configs[f"{NAME}_unet"].dynamic_batching.max_queue_delay_microseconds == UNET_QUEUE_DELAY_US


def picture(url: str, seed: int, side: int = SIDE) -> np.ndarray:
    with ProdgenClient(url, timeout_s=300) as client:
        return client.txt2img(NAME, PROMPT, Sampling(seed=seed, steps=STEPS, scheduler="ddim"), side, side)


def test_concurrent_pictures_share_unet_calls_and_come_out_as_when_alone(batched_server: Served) -> None:
    url = batched_server.url
    alone = {seed: picture(url, seed) for seed in range(2)}
    reader = StatisticsReader(url, f"{NAME}_unet")
    pipeline = StatisticsReader(url, NAME)
    try:
        before, pipeline_before = reader.read(), pipeline.read()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            together = list(pool.map(lambda seed: picture(url, seed), range(PICTURES)))
        after, pipeline_after = reader.read(), pipeline.read()
    finally:
        reader.close()
        pipeline.close()
    assert before is not None and after is not None and pipeline_before is not None and pipeline_after is not None
    unet = difference(before, after)
    print(f"UNet: {unet.inferences} rows in {unet.executions} executions (average batch {unet.average_batch})")
    assert unet.failed == 0 and unet.inferences == PICTURES * STEPS * 2  # a guidance pair per picture and step
    assert unet.average_batch is not None and unet.average_batch > 2, (
        f"UNet average batch {unet.average_batch}: concurrent pictures never shared a UNet call"
    )
    requests = difference(pipeline_before, pipeline_after)
    assert requests.executions == requests.requests == PICTURES  # each pipeline call runs on its own
    for seed, expected in alone.items():  # sharing a call changes nothing in a picture beyond float rounding
        assert np.abs(together[seed].astype(int) - expected.astype(int)).max() <= 1


def test_server_memory_stays_where_it_was_after_the_first_pictures(batched_server: Served) -> None:
    pid = listener_pid(batched_server.server.options.grpc_port)
    assert pid is not None
    sides = [8, 64, 24, 48, 16, 56, 32, 40, 64, 8]  # mixed sizes, the largest the model takes among them
    for index, side in enumerate(sides):
        picture(batched_server.url, index, side)
    settled_mb = tree_rss_mb(pid)
    for round_index in range(2):
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda item: picture(batched_server.url, 100 + item[0], item[1]), enumerate(sides)))
        print(f"after {10 * (round_index + 2)} pictures: {tree_rss_mb(pid):.0f} MB (after 10: {settled_mb:.0f} MB)")
    grown_mb = tree_rss_mb(pid) - settled_mb
    assert grown_mb <= max(64.0, 0.05 * settled_mb), f"server memory grew by {grown_mb:.0f} MB after its first pictures"
