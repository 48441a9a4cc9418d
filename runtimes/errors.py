"""The runtime's input-error type: the CLI prints it as one line and exits with status 2."""

from __future__ import annotations


class RuntimeInputError(ValueError):
    """Bad artifact, source or frames: reported in one line naming the file and the problem."""
