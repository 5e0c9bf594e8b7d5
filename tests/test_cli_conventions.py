"""What every console script does alike: help on a bare command, --version, --debug in help, one error style.

A few checks run the installed console scripts as a user would; the many help pages are read
in-process through the same `main()` entry points (each script start costs seconds of imports).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

import prodgen
from prodgen.bench.cli import main as bench_main
from prodgen.cli import main as prodgen_main
from prodgen.export.cli import main as export_main
from tests_support import console_script

MAINS: dict[str, Callable[[], None]] = {
    "prodgen": prodgen_main,
    "prodgen-export": export_main,
    "prodgen-bench": bench_main,
}
COMMANDS = (
    ("prodgen", "generate"),
    ("prodgen", "stylize"),
    ("prodgen", "upscale"),
    ("prodgen", "cutout"),
    ("prodgen", "models"),
    ("prodgen", "health"),
    ("prodgen", "serve"),
    ("prodgen-export",),
    ("prodgen-bench", "direct"),
    ("prodgen-bench", "served"),
    ("prodgen-bench", "zoo"),
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([console_script(args[0]), *args[1:]], capture_output=True, text=True, timeout=120)


def run_in_process(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", list(args))
    with pytest.raises(SystemExit) as exited:
        MAINS[args[0]]()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_a_bare_command_shows_its_help() -> None:
    result = run("prodgen")
    shown = result.stdout + result.stderr
    assert "Usage: prodgen [OPTIONS] COMMAND" in shown and "generate" in shown
    assert "Missing command" not in shown


@pytest.mark.parametrize("command", [("prodgen-export",), ("prodgen-bench",), ("prodgen", "generate")], ids=" ".join)
def test_bare_commands_in_process(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _code, out, err = run_in_process(command, capsys, monkeypatch)
    assert "Usage:" in out + err and "Missing" not in out + err


def test_version_through_the_console_script() -> None:
    result = run("prodgen-export", "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"prodgen {prodgen.__version__}"


@pytest.mark.parametrize("script", ["prodgen", "prodgen-bench"])
def test_version_in_process(script: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _err = run_in_process((script, "--version"), capsys, monkeypatch)
    assert (code, out.strip()) == (0, f"prodgen {prodgen.__version__}")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_documents_debug_and_names_arguments_without_python_types(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run_in_process((*command, "--help"), capsys, monkeypatch)
    assert code == 0, err
    assert "--debug" in out
    arguments = out.split("Options:")[0]
    assert "list[" not in arguments and "<str>" not in arguments


def test_errors_share_the_usage_errors_prefix_and_suggest_a_close_name() -> None:
    usage = run("prodgen", "generate", "dcgan", "--no-such-option")
    ours = run("prodgen-export", "dcgn")
    assert usage.returncode == ours.returncode == 2
    assert "Error: No such option" in usage.stderr
    assert ours.stderr.startswith("Error: unknown model 'dcgn'; did you mean 'dcgan'?")
