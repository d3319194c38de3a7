"""Errors shared by the collector and the CLI."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input or environment (bad flag, missing file, port in use, unreachable store).

    The CLI prints it as one line on stderr and exits with ``code`` (2 by default) — never a traceback.
    """

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
