"""The root of Folio's user-facing errors; it lives in the lowest layer so every package can use it.

A `FolioError`'s message is shown to the user as-is, in one line. Anything that is not a
`FolioError` is unexpected: the user gets an apology and the log gets the traceback.
"""

from __future__ import annotations


class FolioError(Exception):
    """An error whose message is safe and useful to show to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(FolioError):
    """The configuration is invalid, or a configured file (such as a model) is missing."""
