"""How a benchmark tells its caller what it is doing: the CLI draws progress bars and a live
table from these calls; library users and tests pass `Silent()`."""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def phase(self, text: str) -> None:
        """A new step begins (exporting, measuring the ceiling, one runtime at one shape…)."""

    def progress(self, done: float, total: float) -> None:
        """How far the current step is, in its own units (seconds or samples)."""

    def result(self, row: object) -> None:
        """A finished measurement (a direct `Measurement` or a served `LoadLevel`)."""

    def note(self, text: str) -> None:
        """Something the user should read: a skipped runtime, an unstable measurement."""


class Silent:
    def phase(self, text: str) -> None:
        pass

    def progress(self, done: float, total: float) -> None:
        pass

    def result(self, row: object) -> None:
        pass

    def note(self, text: str) -> None:
        pass
