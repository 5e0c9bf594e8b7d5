"""Helpers shared by the tests (importable as `tests_support`)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def console_script(name: str) -> str:
    """The installed console script of this environment, as a user would run it."""
    return str(Path(sys.executable).parent / name)
