"""Helpers shared by the tests (importable as `tests_support`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prodgen.serve.server import EmbeddedServer, free_port

__all__ = ["all_running", "console_script", "free_port"]


def console_script(name: str) -> str:
    """The installed console script of this environment, as a user would run it."""
    return str(Path(sys.executable).parent / name)


@contextmanager
def all_running(servers: list[EmbeddedServer]) -> Iterator[list[EmbeddedServer]]:
    """Start every server in turn; stop each one on the way out, also when a start fails."""
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
