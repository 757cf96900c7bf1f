"""The one place that turns an exception into what the user is told.

A `FolioError` carries a message written for users, shown as-is. Anything else is a bug or an
outage: the user gets an apology (never a traceback or an internal detail) and the log gets the
full traceback, so nothing fails silently.
"""

from __future__ import annotations

import logging

from bot.errors import FolioError

logger = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong on my side. It has been logged; please try again later."


def user_message(exc: BaseException, *, context: str = "") -> str:
    """The one-line reply for `exc`; unexpected errors are logged with their traceback."""
    if isinstance(exc, FolioError):
        return exc.message
    logger.exception("unexpected error%s", f" ({context})" if context else "", exc_info=exc)
    return APOLOGY
