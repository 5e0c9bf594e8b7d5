"""The model zoo: architectures re-implemented with upstream's state_dict names.

Each module below registers one or more `ZooModel` entries on import.
"""

from prodgen.zoo import (  # noqa: F401  (registration)
    adain,
    conditional_dcgan,
    cyclegan,
    dcgan,
    isnet,
    pix2pix,
    rrdbnet,
    srvgg,
    stylegan2,
    transformer_net,
    u2net,
)
from prodgen.zoo.registry import get, names, register
from prodgen.zoo.spec import ZooModel

__all__ = ["ZooModel", "get", "names", "register"]
