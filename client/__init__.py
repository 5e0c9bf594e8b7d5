"""Client side of prodgen: the Python API a shop's service imports, and the CLI over it.

`from prodgen.client import ProdgenClient` loads the gRPC client on first use of a name, so
that the `prodgen` CLI (a module of this package) starts without it for `--help` and the
commands that do not call a server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Health", "ProdgenClient", "Sampling", "ServedModel"]

if TYPE_CHECKING:
    from prodgen.client.api import Health, ProdgenClient, ServedModel
    from prodgen.client.diffusion import Sampling
else:

    def __getattr__(name: str) -> object:
        if name == "Sampling":
            from prodgen.client import diffusion

            return diffusion.Sampling
        if name in __all__:
            from prodgen.client import api

            return getattr(api, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
