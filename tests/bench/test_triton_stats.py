"""Triton statistics differenced over a window, and the request log's accounting, on synthetic data."""

from __future__ import annotations

import threading

import pytest

from prodgen.bench.load import RequestLog
from prodgen.bench.triton_stats import difference, parse_statistics, split_latency


def snapshot(requests: int, executions: int, queue_ns: int, infer_ns: int, success_ns: int, failed: int = 0) -> dict:
    """The shape of `get_inference_statistics(model, as_json=True)`: int64s as strings, zero fields absent."""
    duration = lambda count, ns: {"count": str(count), "ns": str(ns)} if count else {}  # noqa: E731
    return {
        "model_stats": [
            {
                "name": "style",
                "version": "1",
                "inference_count": str(requests),
                "execution_count": str(executions),
                "inference_stats": {
                    "success": duration(requests, success_ns),
                    "fail": duration(failed, 1000 * failed),
                    "queue": duration(requests, queue_ns),
                    "compute_input": duration(executions, executions * 100_000),
                    "compute_infer": duration(executions, infer_ns),
                    "compute_output": duration(executions, executions * 200_000),
                    "cache_hit": {},
                },
            },
            {"name": "other", "version": "1", "inference_count": "99", "execution_count": "99", "inference_stats": {}},
        ]
    }


def test_parse_sums_this_model_only() -> None:
    stats = parse_statistics(snapshot(10, 5, 1_000_000, 50_000_000, 80_000_000), "style")
    assert stats.inference_count == 10 and stats.execution_count == 5
    assert stats.durations["queue"].count == 10 and stats.durations["queue"].ns == 1_000_000
    assert stats.durations["fail"].count == 0
    with pytest.raises(ValueError, match="no statistics"):
        parse_statistics(snapshot(1, 1, 1, 1, 1), "missing")


def test_difference_gives_per_request_milliseconds_over_the_window() -> None:
    before = parse_statistics(snapshot(10, 10, 5_000_000, 40_000_000, 60_000_000), "style")
    # the window adds 20 requests in 10 executions: 2 ms queue each, 8 ms infer each, 12 ms server each
    after = parse_statistics(snapshot(30, 20, 45_000_000, 120_000_000, 300_000_000), "style")
    window = difference(before, after)
    assert window.requests == 20 and window.executions == 10 and window.inferences == 20
    assert window.average_batch == 2.0
    assert window.queue_ms == pytest.approx(2.0)
    assert window.compute_infer_ms == pytest.approx(8.0)
    assert window.compute_input_ms == pytest.approx(0.1)
    assert window.compute_output_ms == pytest.approx(0.2)
    assert window.server_ms == pytest.approx(12.0)
    assert window.server_overhead_ms == pytest.approx(12.0 - 2.0 - 8.0 - 0.1 - 0.2)


def test_split_puts_the_rest_of_client_latency_on_client_and_network() -> None:
    before = parse_statistics(snapshot(0, 0, 0, 0, 0), "style")
    after = parse_statistics(snapshot(4, 4, 4_000_000, 20_000_000, 32_000_000), "style")
    split = split_latency(9.5, difference(before, after))
    assert split.server_ms == pytest.approx(8.0)
    assert split.client_and_network_ms == pytest.approx(1.5)


def test_a_window_with_no_requests_has_no_per_request_figures() -> None:
    stats = parse_statistics(snapshot(3, 3, 1, 1, 1), "style")
    window = difference(stats, stats)
    assert window.requests == 0 and window.server_ms is None and window.average_batch is None
    assert split_latency(5.0, window).client_and_network_ms is None


def test_counters_going_backwards_are_reported() -> None:
    with pytest.raises(ValueError, match="backwards"):
        difference(
            parse_statistics(snapshot(9, 9, 1, 1, 1), "style"), parse_statistics(snapshot(2, 2, 1, 1, 1), "style")
        )


def test_request_log_budget_and_accounting_under_threads() -> None:
    log = RequestLog(max_requests=1000)

    def worker(fail_every: int) -> None:
        n = 0
        while log.reserve():
            n += 1
            start = log.now()
            log.record(start, start + 0.001, "UNAVAILABLE: boom" if n % fail_every == 0 else None)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (3, 5, 7, 11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.sent == 1000
    assert log.completed + log.errors == log.sent
    assert log.errors > 0 and log.error_messages["UNAVAILABLE: boom"] == log.errors
    assert log.budget_spent
    assert len(log.samples) == 1000 and all(s.latency_ms == pytest.approx(1.0) for s in log.samples)


def test_request_log_keeps_a_few_distinct_error_messages() -> None:
    log = RequestLog(max_requests=100)
    for index in range(20):
        assert log.reserve()
        log.record(0.0, 0.1, f"error {index}")
    assert log.errors == 20 and len(log.error_messages) == 5
