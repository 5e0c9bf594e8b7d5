"""`prodgen-bench diffusion`'s arithmetic and report: per step and fixed cost from two step counts."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from prodgen.bench.diffusion import ConcurrencyFigures, _figures, markdown


def test_per_step_and_fixed_cost_come_from_the_medians_at_two_step_counts() -> None:
    # 1 s fixed + 2 s a step, with one slow outlier at each count that the median ignores
    figures = _figures("served", {2: [5000.0, 5000.0, 9000.0], 6: [13000.0, 20000.0, 13000.0]}, None, 4096.0)
    assert figures.per_picture_ms == {2: 5000.0, 6: 13000.0}
    assert figures.per_step_ms == pytest.approx(2000.0)
    assert figures.fixed_ms == pytest.approx(1000.0)


def test_report_names_every_runner_and_the_concurrency_figures() -> None:
    served = _figures("served", {1: [3000.0], 3: [7000.0]}, None, 5120.0)
    peer = _figures("openvino-static", {1: [2500.0], 3: [6500.0]}, 38.5, 9216.0)
    level = ConcurrencyFigures(4, 8, 1, 60.0, 8.0, 9000.0, 12000.0, 4.0, 6.5)
    text = markdown(
        {
            "side": 256,
            "scheduler": "ddim",
            "guidance": 7.5,
            "intra_op_threads": 2,
            "repeats": 2,
            "steps": [1, 3],
            "runners": {"served": asdict(served), "openvino-static": asdict(peer)},
            "concurrency": [asdict(level)],
            "served_rss_mb": {"idle": 4096.0, "after_timed_pictures": 5120.0, "end": 5120.0},
            "notes": ["openvino: not measured"],
        },
        "title",
    )
    assert "| served | 3.00 s | 7.00 s | 2.00 s | 1.00 s | — | 5.00 GB |" in text
    assert "| openvino-static | 2.50 s | 6.50 s | 2.00 s | 0.50 s | 38.5 dB | 9.00 GB |" in text
    assert "| 4 | 8 | 8.00 | 9.00 s | 12.00 s | 4.00× | 6.50 |" in text
    assert "- openvino: not measured" in text
