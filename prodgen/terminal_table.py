"""Tables that fit the terminal they are printed on, without cutting a number.

Rich shrinks a table that is too wide by cutting cells ("cat… │ 16… │ 690…"). Here every
figure keeps its full width; headers wrap onto several lines instead, text columns (names,
lists) may wrap, and when that is still too wide the rightmost columns are left out and the
caption names them. Commands that print tables also take `--json` for machines.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

UNLIMITED = 100_000
"""Width to measure a table's natural width against: wider than any table."""

MIN_TEXT_WIDTH = 12
"""A wrapping text column keeps at least this many characters a line (or its longest word)."""


def _words(header: str) -> list[str]:
    """A header's pieces that may start a new line: at spaces, and after '+' or '='."""
    return [word for word in re.split(r"\s+|(?<=[+=])", header) if word]


def _longest_word(text: str) -> int:
    return max((len(word) for word in _words(text)), default=0)


def _wrap_header(header: str, width: int) -> str:
    lines: list[str] = []
    for word in _words(header):
        glue = "" if not lines or lines[-1].endswith(("+", "=")) else " "
        if lines and len(lines[-1]) + len(glue) + len(word) <= width:
            lines[-1] += glue + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _min_width(header: str, cells: Sequence[str], wraps: bool) -> int:
    widest = max((len(cell) for cell in cells), default=0)
    if wraps:
        return max(_longest_word(header), min(widest, MIN_TEXT_WIDTH), 1)
    return max(widest, _longest_word(header), 1)


def table_width(widths: Sequence[int]) -> int:
    """Characters a rich Table with the default box and padding needs for these column widths."""
    return sum(widths) + 3 * len(widths) + 1


def fitted_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int | None,
    *,
    title: str | None = None,
    wrap: Collection[str] = (),
    left: Collection[str] = (),
) -> Table:
    """A table of string cells no wider than `width` (None: as wide as it needs).

    Columns named in `wrap` may wrap their text; every other cell is printed whole, so the
    table leaves out its rightmost columns (never the first) until it fits. Columns named in
    `left` are left-aligned, others (figures) right-aligned.
    """
    columns = [[row[index] for row in rows] for index in range(len(headers))]
    if width is None:  # no limit: every header on one line
        widths = [max([len(header), *map(len, cells)]) for header, cells in zip(headers, columns, strict=True)]
    else:
        widths = [_min_width(header, cells, header in wrap) for header, cells in zip(headers, columns, strict=True)]
    kept = list(range(len(headers)))
    while width is not None and len(kept) > 1 and table_width([widths[i] for i in kept]) > width:
        kept.pop()
    dropped = [headers[i] for i in range(len(headers)) if i not in kept]
    caption = f"left out to fit {width} columns: {', '.join(dropped)}" if dropped else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for index in kept:
        header = headers[index]
        wraps = header in wrap
        justify: JustifyMethod = "left" if header in left or wraps else "right"
        if wraps:
            table.add_column(header, justify=justify, overflow="fold", min_width=widths[index])
        else:
            heading = Text(_wrap_header(header, widths[index]))
            table.add_column(heading, justify=justify, no_wrap=True, min_width=widths[index])
    for row in rows:
        table.add_row(*(row[index] for index in kept))
    return table


def print_table(
    console: Console,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    wrap: Collection[str] = (),
    left: Collection[str] = (),
) -> None:
    """Print a fitted table: as wide as the terminal, or whole (no column left out) into a pipe or file."""
    if console.is_terminal:
        console.print(fitted_table(headers, rows, console.width, title=title, wrap=wrap, left=left))
        return
    table = fitted_table(headers, rows, None, title=title, wrap=wrap, left=left)
    natural = Measurement.get(console, console.options.update(max_width=UNLIMITED), table).maximum
    Console(file=console.file, width=natural, highlight=False).print(table)
