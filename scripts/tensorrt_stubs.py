"""Write a parseable copy of the installed tensorrt-stubs, for mypy's search path.

    python scripts/tensorrt_stubs.py TARGET    # prints TARGET, or exits 1 without the stubs

tensorrt-stubs 10.13 has a few `def` lines Python cannot parse (a parameter named `in`,
parameters without a default after ones with a default); the copy renames and defaults
them, so mypy can check every TensorRT name and signature prodgen's build path uses.
`make check` and tests/export/test_tensorrt_build.py both use it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path


def parseable_line(line: str) -> str:
    """One stub line, with a parameter named `in` renamed and missing defaults after a default added."""
    if not line.lstrip().startswith("def ") or "(" not in line:
        return line
    try:
        ast.parse(line.strip() + " ...")
        return line
    except SyntaxError:
        pass
    line = re.sub(r"(?<=[(, ])in:", "in_:", line)
    head, _, rest = line.partition("(")
    params, _, tail = rest.rpartition(")")
    parts, depth, current = [], 0, ""
    for char in params:
        depth += char in "[(" and 1 or (char in "])" and -1 or 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    seen_default = False
    for index, part in enumerate(parts):
        seen_default = seen_default or "=" in part
        if seen_default and "=" not in part and part.strip():
            parts[index] = part + " = ..."
    return f"{head}({','.join(parts)}){tail}"


def write_parseable_stubs(target: Path) -> Path | None:
    """The stubs' `tensorrt` and `tensorrt_bindings` packages, parseable, under `target`; None if not installed."""
    try:
        files = importlib.metadata.files("tensorrt-stubs") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    stubs = [f for f in files if f.suffix == ".pyi" and f.parts[0] in ("tensorrt", "tensorrt_bindings")]
    for stub in stubs:
        copy = target / Path(*stub.parts)
        copy.parent.mkdir(parents=True, exist_ok=True)
        text = Path(str(stub.locate())).read_text()
        copy.write_text("\n".join(parseable_line(line) for line in text.splitlines()) + "\n")
    return target if stubs else None


if __name__ == "__main__":
    written = write_parseable_stubs(Path(sys.argv[1]))
    if written is None:
        sys.exit("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    print(written)
