"""Progress for work that can take more than a few seconds, on a terminal and in a pipe.

On a terminal, a `ProgressBoard` draws rich progress bars on stderr (so stdout keeps only
results): a count with its unit, the elapsed time and an ETA, or a spinner where the total is
unknown (export steps). Piped (CI logs, make, `| tee`) there are no bars and no escape codes:
every `PRODGEN_PROGRESS_SECONDS` seconds (default 10) each running task prints one plain line
with its step, count, elapsed time and ETA, so a log never goes silent for minutes; once a
task has printed, each new step of it prints at once, and it ends with a line saying how long
it took. Work done within the interval prints nothing, so a quick command's output (and its
one-line error) stays as it was. `PRODGEN_PROGRESS_SECONDS=0` prints a line on every update.

Only one rich live display may run at a time, so a command opens one board and adds its
tasks to it (a photo's tiles inside the list of photos).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

INTERVAL_ENV = "PRODGEN_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 10.0


def plain_interval() -> float:
    """Seconds between plain progress lines when output is piped."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def duration(seconds: float) -> str:
    """'45 s', '2 min 05 s', '1 h 32 min': how long, for a person."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _Eta(TimeRemainingColumn):
    """'ETA 0:01:30' where the total is known; nothing for work of unknown length (an export step)."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else Text.assemble("ETA ", super().render(task))


def _count(task: ProgressTask) -> str:
    return f"{task.done:g}/{task.total:g} {task.unit}" if task.unit and task.total else ""


class ProgressTask:
    """One piece of work on a board: a description, done so far and the total (None: unknown)."""

    def __init__(self, board: ProgressBoard, description: str, total: float | None, unit: str) -> None:
        self.board = board
        self.name = description
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0.0
        self.started = self.step_started = time.monotonic()
        self.lines_printed = 0
        self.last_line = self.started
        self.rich_id: TaskID | None = None

    def __enter__(self) -> ProgressTask:
        self.board._open(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.board._close(self, failed=kind is not None)

    def update(self, done: float, total: float | None = None) -> None:
        """Set how much is done (and the total, when it becomes known)."""
        self.done = done
        if total is not None:
            self.total = total
        self.board._changed(self)

    def advance(self, amount: float = 1.0) -> None:
        self.update(self.done + amount)

    def step(self, description: str, total: float | None = None) -> None:
        """A new step of the work: its own description, count and clock."""
        self.description = description
        self.done, self.total = 0.0, total
        self.step_started = time.monotonic()
        self.board._stepped(self)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def status(self) -> str:
        """'upscale coffee.jpg: 3/12 tiles (25 %), 12 s elapsed, about 36 s left'."""
        elapsed = time.monotonic() - self.step_started
        if not self.total:
            return f"{self.description}: {duration(elapsed)} elapsed"
        share = f"{math.floor(100 * self.done / self.total)} %"
        # a count of things ('3/12 tiles (25 %)'), or only the share of work measured otherwise (seconds)
        count = f"{self.done:g}/{self.total:g} {self.unit} ({share})" if self.unit else share
        left = f", about {duration(elapsed / self.done * (self.total - self.done))} left" if self.done else ""
        return f"{self.description}: {count}, {duration(elapsed)} elapsed{left}"


class ProgressBoard:
    """All the progress of one command; use as a context manager and add tasks with `task()`."""

    def __init__(self, console: Console | None = None, interval_s: float | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.interactive = self.console.is_terminal
        self.interval_s = plain_interval() if interval_s is None else interval_s
        self.tasks: list[ProgressTask] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            _Eta(),
            console=self.console,
            transient=True,
            # results printed to stdout go above the bars only when both share the terminal
            redirect_stdout=sys.stdout.isatty(),
        )

    def __enter__(self) -> ProgressBoard:
        if self.interactive:
            self._bars.start()
        elif self.interval_s > 0:
            self._heartbeat = threading.Thread(target=self._beat, name="prodgen-progress", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.interactive:
            self._bars.stop()

    def task(self, description: str, total: float | None = None, unit: str = "") -> ProgressTask:
        return ProgressTask(self, description, total, unit)

    def _print(self, line: str) -> None:
        print(line, file=self.console.file, flush=True)

    def _open(self, task: ProgressTask) -> None:
        with self._lock:
            self.tasks.append(task)
        if self.interactive:
            task.rich_id = self._bars.add_task(task.description, total=task.total, count=_count(task))

    def _close(self, task: ProgressTask, failed: bool) -> None:
        with self._lock:
            self.tasks.remove(task)
        if task.rich_id is not None:
            self._bars.remove_task(task.rich_id)
        elif task.lines_printed and not failed:
            self._print(f"{task.name}: done in {duration(task.elapsed())}")

    def _changed(self, task: ProgressTask) -> None:
        if task.rich_id is not None:
            self._bars.update(task.rich_id, completed=task.done, total=task.total, count=_count(task))
        elif not self.interactive and self.interval_s == 0:
            self._report(task)

    def _stepped(self, task: ProgressTask) -> None:
        """Piped, a new step gets its line at once only in work already slow enough to report
        (a quick export prints nothing, and its one-line error stays one line)."""
        if task.rich_id is not None:
            self._bars.reset(task.rich_id, total=task.total, description=task.description, count=_count(task))
        elif not self.interactive and (task.lines_printed or task.elapsed() >= self.interval_s):
            self._report(task)

    def _report(self, task: ProgressTask) -> None:
        task.lines_printed += 1
        task.last_line = time.monotonic()
        self._print(task.status())

    def _beat(self) -> None:
        """Piped: a line for each task that has been quiet for the interval."""
        while not self._stop.wait(min(1.0, self.interval_s)):
            with self._lock:
                running = list(self.tasks)
            for task in running:
                if time.monotonic() - task.last_line >= self.interval_s:
                    self._report(task)


@contextmanager
def progress_task(description: str, total: float | None = None, unit: str = "") -> Iterator[ProgressTask]:
    """A board with a single task, for commands with one piece of long work."""
    with ProgressBoard() as board, board.task(description, total, unit) as task:
        yield task
