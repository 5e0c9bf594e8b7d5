"""The terminal view of a run: result tables that grow as measurements finish, with a
progress bar for the current step underneath; notes print above as they happen.

The tables fit the terminal's width (figures are never cut; columns that do not fit are left
out and named under the table). Into a pipe or file the tables print whole once, at the end,
and the steps of the run go to stderr as plain progress lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from prodgen.bench.direct import Measurement
from prodgen.bench.served import LoadLevel
from prodgen.bench.tables import CONSOLE_DIRECT, CONSOLE_SERVED, DIRECT_COLUMNS, SERVED_COLUMNS, cells
from prodgen.progress import ProgressBoard, ProgressTask
from prodgen.terminal_table import UNLIMITED, fitted_table

TEXT_COLUMNS = ("model", "runtime", "precision", "load")


def _table(title: str, names: Sequence[str], rows: list[list[str]], width: int | None) -> Table:
    return fitted_table(names, rows, width, title=title, wrap=("model", "load"), left=TEXT_COLUMNS)


def bench_console(stderr: bool = False) -> Console:
    """The terminal, or an unlimited page when output goes to a file or pipe (lines are never wrapped)."""
    out = Console(highlight=False, stderr=stderr)
    if not out.is_terminal:
        out = Console(highlight=False, stderr=stderr, width=UNLIMITED, soft_wrap=True)
    return out


class LiveView:
    """An `Observer` drawing on the terminal; use as a context manager."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.bars.add_task("starting", total=1.0)
        self.direct: list[list[str]] = []
        self.served: list[list[str]] = []
        self.noted: set[str] = set()
        self.live = Live(self._render(), console=console, refresh_per_second=4)
        self.plain = ProgressBoard()
        self.plain_task: ProgressTask | None = None

    def _tables(self) -> list[Table]:
        width = self.console.width if self.console.is_terminal else None
        tables = []
        if self.direct:
            tables.append(_table("direct", CONSOLE_DIRECT, self.direct, width))
        if self.served:
            tables.append(_table("served", CONSOLE_SERVED, self.served, width))
        return tables

    def _render(self, with_bars: bool = True) -> Group:
        return Group(*self._tables(), *([self.bars] if with_bars else []))

    def __enter__(self) -> LiveView:
        self.live.start()
        if not self.console.is_terminal:
            self.plain.__enter__()
            self.plain_task = self.plain.task("prodgen-bench").__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.plain_task is not None:
            self.plain_task.__exit__(kind, error, trace)
            self.plain.__exit__(kind, error, trace)
        self.live.update(self._render(with_bars=False), refresh=True)
        self.live.stop()
        if not self.console.is_terminal:
            self.console.line()

    def phase(self, text: str) -> None:
        self.bars.update(self.task, description=text, completed=0, total=1.0)
        if self.plain_task is not None:
            self.plain_task.step(f"prodgen-bench: {text}")

    def progress(self, done: float, total: float) -> None:
        self.bars.update(self.task, completed=done, total=total)
        if self.plain_task is not None:
            self.plain_task.update(done, total)

    def result(self, row: object) -> None:
        if isinstance(row, Measurement):
            self.direct.append(cells(DIRECT_COLUMNS, CONSOLE_DIRECT, row))
        elif isinstance(row, LoadLevel):
            self.served.append(cells(SERVED_COLUMNS, CONSOLE_SERVED, row))
        self.live.update(self._render())

    def note(self, text: str) -> None:
        """Each distinct note once (a skipped runtime is skipped for every model of a zoo run)."""
        if text not in self.noted:
            self.noted.add(text)
            self.live.console.print(f"[yellow]note:[/] {text}", markup=True, highlight=False)
