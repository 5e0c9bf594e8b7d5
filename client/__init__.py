"""Client side of prodgen: the Python API a shop's service imports, and the CLI over it."""

from prodgen.client.api import Health, ProdgenClient, ServedModel

__all__ = ["Health", "ProdgenClient", "ServedModel"]
