"""Published configs bound the server's queue and declare the inputs' allowed ranges."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from prodgen import zoo
from prodgen.model_repository.config import (
    MIN_QUEUED_BATCHES,
    BatchingOptions,
    onnxruntime_config,
    parse_pbtxt,
    parse_range,
    queue_policy_for,
    to_pbtxt,
)


def test_queue_holds_what_the_model_answers_within_the_budget() -> None:
    assert queue_policy_for(items_per_second=500, latency_budget_s=0.5, max_batch_size=8) == (250, 500_000)


def test_a_slow_model_still_queues_a_few_full_batches() -> None:
    size, _ = queue_policy_for(items_per_second=0.4, latency_budget_s=1.0, max_batch_size=8)
    assert size == MIN_QUEUED_BATCHES * 8


def test_queue_policy_needs_a_positive_throughput_and_budget() -> None:
    with pytest.raises(ValueError, match="positive"):
        queue_policy_for(0, 1.0, 8)


def test_bounded_queue_reaches_the_config_triton_parses() -> None:
    batching = BatchingOptions(max_batch_size=8, max_queue_size=40, queue_timeout_us=1_000_000)
    config = parse_pbtxt(to_pbtxt(onnxruntime_config(zoo.get("dcgan"), "dcgan", batching)))
    policy = config.dynamic_batching.default_queue_policy
    assert policy.max_queue_size == 40
    assert policy.default_timeout_microseconds == 1_000_000
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT


def test_unbounded_queue_publishes_no_policy() -> None:
    config = onnxruntime_config(zoo.get("dcgan"), "dcgan", BatchingOptions())
    assert not config.dynamic_batching.HasField("default_queue_policy")


@pytest.mark.parametrize(
    ("zoo_name", "tensor", "expected"),
    [
        ("conditional-dcgan", "class_id", (0.0, 9.0)),
        ("catalogue-dcgan", "class_id", (0.0, 5.0)),
        ("adain", "alpha", (0.0, 1.0)),
    ],
)
def test_input_ranges_are_published(zoo_name: str, tensor: str, expected: tuple[float, float]) -> None:
    config = onnxruntime_config(zoo.get(zoo_name), zoo_name, BatchingOptions())
    assert parse_range(config.parameters[f"prodgen.range.{tensor}"].string_value) == expected
