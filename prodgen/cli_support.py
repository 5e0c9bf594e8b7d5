"""What every prodgen console script shares: one-line errors, `--version`, `--debug`, help on a bare command.

An error a user can fix is one line on stderr starting with `Error:` and exit status 2, Typer's
own usage mistakes (`--steps 0`, a missing argument) included; anything unexpected is
one line and exit status 1. `--debug` anywhere on the command line shows the full traceback
instead; every command's help says so.
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console

import prodgen
from prodgen.errors import ProdgenError

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)

URL_VARIABLE = "PRODGEN_URL"
"""Names the server for every client command (`--url`) and the bench, the way a shop configures a service."""
GRPC_PORT_VARIABLE, HTTP_PORT_VARIABLE, METRICS_PORT_VARIABLE = (
    "PRODGEN_GRPC_PORT",
    "PRODGEN_HTTP_PORT",
    "PRODGEN_METRICS_PORT",
)
"""`prodgen serve`'s three ports, Triton's own three (--grpc-port, --http-port, --metrics-port)."""

UrlOption = Annotated[str, typer.Option(envvar=URL_VARIABLE, help="Triton gRPC endpoint, host:port.")]

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
ERROR_PREFIX = "Error:"
DEBUG_EPILOG = "Add --debug anywhere on the command line to see the full traceback of an error."


def error_line(message: str) -> str:
    return f"{ERROR_PREFIX} {message}"


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    _stderr.print(f"[bold red]{ERROR_PREFIX}[/] {message}", markup=True)
    raise SystemExit(code)


def _print_version(show: bool) -> None:
    if show:
        typer.echo(f"prodgen {prodgen.__version__}")
        raise typer.Exit()


VersionOption = Annotated[
    bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Show prodgen's version and exit.")
]


def _group_options(version: VersionOption = False) -> None:
    """Options of the command group itself (`prodgen --version`)."""


def _has_required_argument(command: object) -> bool:
    return any(p.default is inspect.Parameter.empty for p in inspect.signature(command).parameters.values())  # type: ignore[arg-type]


def _conventions(app: typer.Typer) -> None:
    """Help on a bare command, `--version` on groups, `--debug` in every help: for commands
    other modules add too, so each CLI module only declares its commands."""
    app.info.no_args_is_help = True
    app.info.epilog = app.info.epilog or DEBUG_EPILOG
    for info in app.registered_commands:
        info.epilog = info.epilog or DEBUG_EPILOG
        if info.callback is not None and _has_required_argument(info.callback):
            info.no_args_is_help = True
    if len(app.registered_commands) > 1 and app.registered_callback is None:
        app.callback()(_group_options)


def _hide_argument_types(command: object) -> None:
    """Typer prints an argument's Python type beside its name (`PHOTO... <list[Path]>`); an
    argument given a metavar (MODEL, PHOTO...) is shown by that name alone."""
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "argument" and getattr(param, "metavar", None):
            param.display_type_rich = lambda ctx: None
    for subcommand in getattr(command, "commands", {}).values():
        _hide_argument_types(subcommand)


def run_app(app: typer.Typer) -> None:
    """Run a Typer app, turning exceptions into one clear line unless `--debug` is given."""
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    _conventions(app)
    command = typer.main.get_command(app)
    _hide_argument_types(command)
    try:
        code = command(standalone_mode=False)
    except typer.TyperException as error:  # Typer's own: usage mistakes, a missing argument, a bad file
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare command: its help (Typer names it so too)
            error.show()  # type: ignore[attr-defined]
            raise SystemExit(EXIT_USER_ERROR) from None
        if debug:
            raise
        context = getattr(error, "ctx", None)
        help_hint = f" (see {context.command_path} --help)" if context is not None else ""
        fail(f"{error.format_message()}{help_hint}")
    except typer.Abort:
        raise SystemExit(130) from None
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
    raise SystemExit(code if isinstance(code, int) else 0)


def console() -> Console:
    """Results on stdout; long lines are never broken by rich (a pipe would get them cut at 80 columns)."""
    return Console(highlight=False, soft_wrap=True)
