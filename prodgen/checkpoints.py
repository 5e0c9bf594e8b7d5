"""Safe checkpoint loading: tensors only, never arbitrary pickled code.

`.safetensors` files load through safetensors; `.pth`/`.pt`/`.ckpt` through
`torch.load(weights_only=True)`, which refuses pickled objects other than tensors and
plain containers. Checkpoints often wrap the state_dict (`{"state_dict": ...}`,
BasicSR's `params_ema`, rosinality's `g_ema`); the wrapper keys a zoo model names are
unwrapped in its order of preference.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from prodgen.errors import ProdgenError

StateDict = dict[str, torch.Tensor]

GENERIC_WRAPPER_KEYS = ("state_dict", "model", "net", "generator")

SAFE_GLOBALS: list[Callable[..., object] | tuple[Callable[..., object], str]] = [argparse.Namespace]
"""The one object type allowed beside tensors and containers: rosinality's training files
store their command line as `args` (an `argparse.Namespace`, plain attributes only)."""


def _refused_object(error: pickle.UnpicklingError) -> str:
    """The object weights_only refused, from torch's multi-line message (e.g. `GLOBAL os.system`)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else "an object that is not a tensor"


TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
"""How torch.save files begin: a zip archive (torch >= 1.6) or a pickle stream (older files)."""


def _check_looks_like_torch_file(path: Path) -> None:
    """A text file or a picture would otherwise reach the unpickler and be reported as pickled code."""
    with path.open("rb") as stream:
        head = stream.read(4)
    if not head.startswith(TORCH_MAGIC):
        raise ProdgenError(
            f"checkpoint {path}: not a checkpoint (expected .pth/.pt/.safetensors weights written by torch.save or "
            "safetensors)"
        )


def check_checkpoint_file(path: Path) -> None:
    """A missing file, a folder or a file that is no checkpoint, refused in one line before any work."""
    if path.is_dir():
        raise ProdgenError(f"checkpoint {path} is a folder; expected a .pth/.pt/.safetensors file")
    if not path.is_file():
        raise ProdgenError(f"checkpoint: no file at {path}")
    if path.suffix != ".safetensors":
        _check_looks_like_torch_file(path)


def read_checkpoint(path: Path) -> Mapping[str, object]:
    """Read a checkpoint file into a mapping, refusing anything but weights."""
    check_checkpoint_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise ProdgenError(f"checkpoint {path}: not a readable safetensors file ({error})") from error
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ProdgenError(
            f"checkpoint {path}: holds pickled code or objects ({_refused_object(error)}), which prodgen refuses to "
            "load: prodgen only loads weights; save them with torch.save(model.state_dict(), ...) or as safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ProdgenError(
            f"checkpoint {path}: not a PyTorch (.pth/.pt) or safetensors checkpoint ({error})"
        ) from error
    if not isinstance(loaded, Mapping):
        raise ProdgenError(
            f"checkpoint {path}: holds a {type(loaded).__name__}, expected a state_dict (a dict of tensors)"
        )
    return loaded


def extract_state_dict(loaded: Mapping[str, object], wrapper_keys: Sequence[str] = ()) -> StateDict:
    """Find the state_dict in a checkpoint mapping and strip DataParallel's `module.` prefix."""
    candidate: Mapping[str, object] = loaded
    for key in (*wrapper_keys, *GENERIC_WRAPPER_KEYS):
        inner = loaded.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            candidate = inner
            break
    tensors = {k: v for k, v in candidate.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(sorted(map(str, loaded.keys()))[:8])
        raise ProdgenError(f"checkpoint holds no tensors at its top level or under a known key (found keys: {keys})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def _listing(keys: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights(network: nn.Module, state_dict: StateDict, architecture: str) -> None:
    """Load `state_dict` into `network` strictly, explaining any mismatch in one line."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listing(unexpected)}")
    if mismatched:
        problems.append(f"wrong shapes {_listing(mismatched, 2)}")
    if problems:
        raise ProdgenError(f"checkpoint does not match architecture '{architecture}': " + "; ".join(problems))
    network.load_state_dict(state_dict, strict=True)
