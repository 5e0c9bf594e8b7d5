"""Tables fit the terminal without cutting a figure; into a pipe they print whole."""

from __future__ import annotations

import io

from rich.console import Console

from prodgen.bench.tables import CONSOLE_SERVED
from prodgen.terminal_table import fitted_table, print_table

ROW = [
    "catalogue-look",
    "concurrency 16",
    "yes",
    "12,345+0=12,345",
    "6,903.2",
    "145.23",
    "1,190.55",
    "140.12",
    "0.05",
    "139.90",
    "5.11",
    "1.00",
]


def rendered(width: int) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    table = fitted_table(CONSOLE_SERVED, [ROW], width, wrap=("model", "load"), left=("model", "load", "stable"))
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_at_80_and_120_columns_every_shown_figure_is_whole_and_the_rest_are_named() -> None:
    for width in (80, 120):
        text = rendered(width)
        assert max(len(line) for line in text.splitlines()) <= width
        assert "…" not in text
        shown = [cell for cell in ROW[3:] if cell in text]
        assert shown == ROW[3 : 3 + len(shown)]  # the leftmost figures are kept, whole
        left_out = CONSOLE_SERVED[3 + len(shown) :]
        caption = " ".join(text.split())
        assert not left_out or f"left out to fit {width} columns: {', '.join(left_out)}" in caption
    assert "1,190.55" in rendered(120)  # p99 fits at 120 columns


def test_into_a_pipe_the_table_prints_whole_on_long_lines() -> None:
    stream = io.StringIO()
    print_table(Console(file=stream, width=80), CONSOLE_SERVED, [ROW], wrap=("model",))
    text = stream.getvalue()
    assert all(cell in text for cell in ROW) and "left out" not in text
    assert all(header in text for header in CONSOLE_SERVED)
