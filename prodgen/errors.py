"""The one exception type a user sees as a single line, never as a traceback."""


class ProdgenError(Exception):
    """A problem the user can fix: names what was wrong and what was expected."""


def first_line(error: BaseException) -> str:
    """A library's error as one line for a ProdgenError: its message's first line, or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
