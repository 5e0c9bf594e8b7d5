"""The terminal view of a run: result tables that grow as measurements finish, with a
progress bar for the current step underneath; notes print above as they happen."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from prodgen.bench.direct import Measurement
from prodgen.bench.served import LoadLevel
from prodgen.bench.tables import CONSOLE_DIRECT, CONSOLE_SERVED, DIRECT_COLUMNS, SERVED_COLUMNS, cells


def _table(title: str, names: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in names:
        table.add_column(name, justify="left" if name in ("model", "runtime", "precision", "load") else "right")
    return table


def bench_console() -> Console:
    """The terminal, or a 200-column page when output goes to a file or pipe (the tables are wide)."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=200)
    return out


class LiveView:
    """An `Observer` drawing on the terminal; use as a context manager."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        )
        self.task = self.bars.add_task("starting", total=1.0)
        self.direct: Table | None = None
        self.served: Table | None = None
        self.noted: set[str] = set()
        self.live = Live(self._render(), console=console, refresh_per_second=4)

    def _tables(self) -> list[Table]:
        return [table for table in (self.direct, self.served) if table is not None]

    def _render(self, with_bars: bool = True) -> Group:
        return Group(*self._tables(), *([self.bars] if with_bars else []))

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.live.update(self._render(with_bars=False), refresh=True)
        self.live.stop()
        if not self.console.is_terminal:
            self.console.line()

    def phase(self, text: str) -> None:
        self.bars.update(self.task, description=text, completed=0, total=1.0)

    def progress(self, done: float, total: float) -> None:
        self.bars.update(self.task, completed=done, total=total)

    def result(self, row: object) -> None:
        if isinstance(row, Measurement):
            self.direct = self.direct or _table("direct", CONSOLE_DIRECT)
            self.direct.add_row(*cells(DIRECT_COLUMNS, CONSOLE_DIRECT, row))
        elif isinstance(row, LoadLevel):
            self.served = self.served or _table("served", CONSOLE_SERVED)
            self.served.add_row(*cells(SERVED_COLUMNS, CONSOLE_SERVED, row))
        self.live.update(self._render())

    def note(self, text: str) -> None:
        """Each distinct note once (a skipped runtime is skipped for every model of a zoo run)."""
        if text not in self.noted:
            self.noted.add(text)
            self.live.console.print(f"[yellow]note:[/] {text}", markup=True, highlight=False)
