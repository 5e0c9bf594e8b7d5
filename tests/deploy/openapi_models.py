"""Check a manifest against the OpenAPI-generated models of a Python SDK (KServe's own `kserve` package).

The models carry every field's name (`attribute_map`) and type (`openapi_types`); building
them from a dict ignores unknown fields, so this walks the dict itself: every key must be a
field of the model, every value of the field's type, nested models and Kubernetes core types
(`kubernetes.client`) included.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any

import kubernetes.client


def _kserve_models() -> types.ModuleType:
    """`kserve.models` without `kserve/__init__.py`: that imports KServe's gRPC protos, which
    define the same `inference.*` messages as tritonclient's, and protobuf refuses the second set."""
    if "kserve" not in sys.modules:
        spec = importlib.util.find_spec("kserve")
        assert spec is not None and spec.origin is not None
        package = types.ModuleType("kserve")
        package.__path__ = [str(Path(spec.origin).parent)]
        sys.modules["kserve"] = package
    return importlib.import_module("kserve.models")


kserve_models = _kserve_models()

_PRIMITIVES: dict[str, Any] = {
    "str": lambda v: isinstance(v, str),
    "datetime": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "object": lambda v: True,
}


def _model(name: str) -> Any:
    for module in (kserve_models, kubernetes.client):
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no model {name} in kserve or kubernetes.client")


def problems(value: Any, type_name: str, where: str = "") -> list[str]:
    """Every mismatch between `value` and the model type `type_name`, as 'path: what'."""
    if type_name in _PRIMITIVES:
        return [] if _PRIMITIVES[type_name](value) else [f"{where}: {value!r} is not {type_name}"]
    listed = re.fullmatch(r"[lL]ist\[(.+)\]", type_name)
    if listed:
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, item in enumerate(value) for p in problems(item, listed.group(1), f"{where}[{i}]")]
    mapped = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name)
    if mapped:
        if not isinstance(value, dict):
            return [f"{where}: expected a map"]
        item_type = mapped.group(1) or mapped.group(2)
        return [p for key, item in value.items() for p in problems(item, item_type, f"{where}.{key}")]
    model = _model(type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} object"]
    fields = {json_name: attribute for attribute, json_name in model.attribute_map.items()}
    found: list[str] = []
    for key, item in value.items():
        if key not in fields:
            found.append(f"{where}.{key}: not a field of {type_name}")
        else:
            found += problems(item, model.openapi_types[fields[key]], f"{where}.{key}")
    return found
