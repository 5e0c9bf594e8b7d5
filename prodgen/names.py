"""The one rule for served model names, shared by export, the model repository and serve.

A served name becomes a folder in the repository, part of Triton's instance names
(`<name>_0_0`), and part of the command line the python backend runs its stub with
(through a shell, so a space, tab, newline or backslash splits it and the stub never starts).
Non-ASCII names stop the stub, and a folder name longer than the filesystem's 255 bytes
cannot be created. So a name is ASCII letters, digits, `_`, `-` and `.`, starts with a
letter, digit or `_`, and is at most `MAX_NAME_LENGTH` characters: the suffixes prodgen adds
(`_fp16`, `_trt`) and Triton adds (instance numbers, staging prefixes) still fit.
"""

from __future__ import annotations

import re

from prodgen.errors import ProdgenError

MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a served model name, or None if it can."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name is {len(name)} characters long, at most {MAX_NAME_LENGTH} are allowed"
    if _NAME.fullmatch(name) is None:
        return "allowed are ASCII letters, digits, '_', '-' and '.', not starting with '.' or '-'"
    return None


def check_model_name(name: str) -> str:
    """`name` unchanged if it is a valid served model name; otherwise a one-line ProdgenError."""
    problem = name_problem(name)
    if problem is not None:
        raise ProdgenError(f"model name {name!r} cannot be served: {problem}")
    return name
