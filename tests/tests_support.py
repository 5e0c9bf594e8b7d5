"""Helpers shared by the tests (importable as `tests_support`)."""

from __future__ import annotations

import sys
from pathlib import Path

from prodgen.serve.server import free_port

__all__ = ["console_script", "free_port"]


def console_script(name: str) -> str:
    """The installed console script of this environment, as a user would run it."""
    return str(Path(sys.executable).parent / name)
