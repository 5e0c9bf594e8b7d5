"""Timing in turns: the order of runs and when the turns stop."""

from __future__ import annotations

import time

from prodgen.turns import TurnLimits, time_turns


def test_runs_take_turns_and_each_gets_a_latency_per_turn() -> None:
    calls: list[str] = []
    series = time_turns([lambda: calls.append("a"), lambda: calls.append("b")], TurnLimits(min_runs=4, min_seconds=0.0))
    assert calls == ["a", "b"] * 4
    assert [len(s) for s in series] == [4, 4] and all(ms >= 0 for s in series for ms in s)


def test_turns_go_on_until_every_run_has_its_minimum_time() -> None:
    limits = TurnLimits(min_runs=1, min_seconds=0.05, max_runs=1000, max_seconds=0.2)
    slow, fast = time_turns([lambda: time.sleep(0.01), lambda: None], limits)
    # the slow run had its 50 ms after five turns; the fast one never gets there, so the slow one's 0.2 s cap ends it
    assert sum(slow) >= 200 and len(slow) == len(fast) < 1000


def test_the_turn_cap_and_the_time_cap_end_the_turns() -> None:
    assert len(time_turns([lambda: None], TurnLimits(min_runs=50, min_seconds=0.0, max_runs=7))[0]) == 7
    (slow,) = time_turns([lambda: time.sleep(0.02)], TurnLimits(min_runs=1000, min_seconds=0.0, max_seconds=0.1))
    assert sum(slow) >= 100 and len(slow) <= 5


def test_progress_is_reported_after_every_turn() -> None:
    seen: list[float] = []
    time_turns([lambda: None], TurnLimits(min_runs=3, min_seconds=0.0), lambda done, total: seen.append(done / total))
    assert seen == [1 / 3, 2 / 3, 1.0]
