"""The paired overhead statistic on hand-made series."""

from __future__ import annotations

import pytest

from prodgen.bench.overhead import paired_differences


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
