"""Errors the CLI turns into one line and exit status 2."""


class InputError(ValueError):
    """Bad user input (a file, a flag, data): reported in one line, exit 2, no traceback."""
