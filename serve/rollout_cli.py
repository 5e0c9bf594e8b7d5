"""`prodgen deploy` and `prodgen rollback`: live version changes on an explicit-mode Triton."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prodgen.cli_support import URL_VARIABLE, console
from prodgen.model_repository.publish import DEFAULT_REPOSITORY
from prodgen.serve.rollout_target import RolloutTarget

_DEFAULTS = RolloutTarget(DEFAULT_REPOSITORY, "")
Model = Annotated[str, typer.Argument(help="Served model name.")]
Repository = Annotated[Path, typer.Option(help="Model repository the explicit-mode Triton loads from.")]
Urls = Annotated[
    list[str] | None,
    typer.Option(
        "--url",
        envvar=URL_VARIABLE,
        help="Triton gRPC endpoint (started with --model-control explicit); repeat for each replica.",
    ),
]
Dns = Annotated[
    str | None, typer.Option(help="NAME:PORT resolving to every replica (a headless Service), instead of --url.")
]
Timeout = Annotated[float, typer.Option(min=1, help="Seconds a load (and an engine build) may take.")]


def _replicas(urls: list[str] | None, dns: str | None) -> tuple[str, ...]:
    from prodgen.client.fleet import resolve_endpoints  # gRPC is loaded by the commands, not by `prodgen --help`

    return tuple(urls or []) + tuple(resolve_endpoints(dns) if dns else []) or _DEFAULTS.urls


def deploy(
    model: Model,
    repository: Repository = _DEFAULTS.repository,
    source: Annotated[
        Path | None,
        typer.Option(help="Exported repository to take the newest version from (default: the newest in REPOSITORY)."),
    ] = None,
    url: Urls = None,
    dns: Dns = None,
    timeout: Timeout = _DEFAULTS.timeout_s,
    keep_history: Annotated[
        int, typer.Option(min=0, help="Older versions kept beyond the served ones, for rollback.")
    ] = _DEFAULTS.keep_history,
) -> None:
    """Load a new version beside the served one, check it against the export's canary, then serve it."""
    from prodgen.serve.rollout import deploy as deploy_version

    out = console()
    target = RolloutTarget(repository, model, _replicas(url, dns), timeout, keep_history)
    done = deploy_version(target, source, step=lambda line: out.print(f"… {line}"))
    assert done.canary is not None
    out.print(
        f"{model} version {done.version} serving (versions {done.served_versions}); canary: {done.canary.describe()}"
        + (f"; removed old versions {done.removed_versions}" if done.removed_versions else "")
    )


def rollback(
    model: Model,
    repository: Repository = _DEFAULTS.repository,
    url: Urls = None,
    dns: Dns = None,
    timeout: Timeout = _DEFAULTS.timeout_s,
) -> None:
    """Serve the previous version again (the newest is moved aside as .rolled-back-<v>)."""
    from prodgen.serve.rollout import rollback as rollback_version

    out = console()
    target = RolloutTarget(repository, model, _replicas(url, dns), timeout)
    done = rollback_version(target, step=lambda line: out.print(f"… {line}"))
    out.print(f"{model} back on version {done.version} (serving {done.served_versions})")
