"""The one exception type a user sees as a single line, never as a traceback."""


class ProdgenError(Exception):
    """A problem the user can fix: names what was wrong and what was expected."""
