"""The paired overhead statistic and its verdict on hand-made series."""

from __future__ import annotations

import re

import numpy as np
import pytest

from prodgen.bench.overhead import PairedOverhead, paired_differences
from prodgen.bench.report import BenchReport, markdown
from prodgen.bench.served import ServedResult, ServedSettings
from prodgen.bench.stats import summarize
from prodgen.bench.targets import TargetCheck, evaluate


def test_a_slowdown_that_hits_both_members_of_a_pair_cancels() -> None:
    direct = [10.0, 100.0, 10.0, 100.0, 100.0]
    served = [11.0, 101.0, 11.0, 101.0, 101.0]
    assert paired_differences(served, direct) == (1.0, 1.0)


def test_one_slow_served_request_moves_p90_not_the_median() -> None:
    direct = [10.0] * 10
    served = [11.0] * 9 + [500.0]
    assert paired_differences(served, direct) == (1.0, 1.0)
    served = [11.0] * 8 + [400.0, 500.0]
    assert paired_differences(served, direct) == (1.0, 390.0)


def test_pairs_must_match_up() -> None:
    with pytest.raises(ValueError):
        paired_differences([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_differences([], [])


def overhead_of(differences: list[float], empty_call_ms: list[float] | None = None) -> PairedOverhead:
    direct = [100.0] * len(differences)
    served = [d + s for d, s in zip(direct, differences, strict=True)]
    p50, p90 = paired_differences(served, direct)
    return PairedOverhead(
        len(served), summarize(served), summarize(direct), p50, p90, None, 2, differences, empty_call_ms or []
    )


def served_result(overhead: PairedOverhead) -> ServedResult:
    return ServedResult("localhost:1", "m", "2.51", 8, {}, 256, "photo", ServedSettings(), [], None, overhead)


def server_overhead_check(overhead: PairedOverhead) -> TargetCheck:
    (check,) = [c for c in evaluate([], [served_result(overhead)]) if c.target.startswith("server adds")]
    return check


def test_the_server_adds_at_most_the_threshold_only_when_the_whole_interval_says_so() -> None:
    rng = np.random.default_rng(0)
    check = server_overhead_check(overhead_of(list(rng.normal(0.5, 0.3, 100))))
    assert check.verdict == "met" and "adds ≤ 1.5 ms" in check.detail and "95 % CI" in check.detail
    check = server_overhead_check(overhead_of(list(rng.normal(3.5, 0.5, 100))))
    assert check.verdict == "missed" and "adds more than 1.5 ms" in check.detail


def test_an_interval_across_the_threshold_is_within_noise_with_the_interval() -> None:
    check = server_overhead_check(overhead_of(list(np.random.default_rng(1).normal(1.5, 4.0, 30))))
    assert check.met is None and check.verdict == "within noise"
    assert check.interval is not None and check.interval.low < 1.5 < check.interval.high
    assert "within noise of 1.5 ms" in check.detail and "adds ≤" not in check.detail


def test_a_negative_added_time_is_never_printed_without_its_interval() -> None:
    overhead = overhead_of(list(np.random.default_rng(2).normal(-0.8, 0.5, 60)))
    assert overhead.added_p50_ms < 0
    text = markdown(BenchReport("prodgen-bench served m", {}, served=[served_result(overhead)], check_targets=True))
    with_interval = r"[-+]?\d+\.\d\d ms \((95 % CI )?[-+]?\d+\.\d\d\.\.[-+]?\d+\.\d\d ms\)"
    assert len(re.findall(with_interval, text)) >= 3  # the target's figure, its detail, the pairs' line
    assert not re.search(r"-\d+\.\d\d ms", re.sub(with_interval, "", text))


def test_the_empty_call_is_taken_off_round_by_round_and_shown_beside_the_verdict() -> None:
    rng = np.random.default_rng(3)
    empty = list(rng.normal(1.2, 0.4, 200))
    inference = rng.normal(0.5, 0.1, 200)
    overhead = overhead_of([e + i for e, i in zip(empty, inference, strict=True)], empty)
    beyond = overhead.beyond_empty_call_p50
    assert beyond is not None and beyond.low < 0.5 < beyond.high and beyond.high - beyond.low < 0.1
    assert overhead.empty_call is not None and overhead.empty_call.count == 200
    check = server_overhead_check(overhead)
    assert (
        check.verdict == "missed"
        and f"an empty gRPC call to the server {overhead.empty_call.p50_ms:.2f} ms" in check.detail
    )
    text = markdown(BenchReport("prodgen-bench served m", {}, served=[served_result(overhead)], check_targets=True))
    assert f"served − direct − that call {beyond.text(' ms', signed=True)}" in text


def test_an_empty_call_timed_in_only_some_rounds_is_refused() -> None:
    with pytest.raises(ValueError, match="every round"):
        overhead_of([1.0, 2.0, 3.0], [1.0])
