"""How every prodgen console script reports failure: one line, a non-zero exit.

`--debug` anywhere on the command line shows the full traceback instead.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

from prodgen.errors import ProdgenError

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    _stderr.print(f"[bold red]error:[/] {message}", markup=True)
    raise SystemExit(code)


def run_app(app: typer.Typer) -> None:
    """Run a Typer app, turning exceptions into one clear line unless `--debug` is given."""
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    try:
        app(standalone_mode=True)
    except ProdgenError as error:
        if debug:
            raise
        fail(str(error))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as error:  # noqa: BLE001 - the CLI boundary: one line for anything unexpected
        if debug:
            raise
        fail(f"{type(error).__name__}: {error} (run again with --debug for the traceback)", EXIT_INTERNAL_ERROR)


def console() -> Console:
    return Console(highlight=False)
