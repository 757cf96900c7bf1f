"""Errors raised by the RAG core that users see as one-line reasons."""

from __future__ import annotations

from config.errors import FolioError


class BadDocumentError(FolioError):
    """A file could not be ingested: not a PDF, encrypted, broken, too large, no text, ..."""


class NotFoundError(FolioError):
    """A named document does not exist in the collection."""


class GenerationCancelled(FolioError):
    """Generation stopped because the job was cancelled."""

    def __init__(self) -> None:
        super().__init__("Cancelled.")


class ServiceUnavailable(FolioError):
    """A service Folio needs (the generation server, the shared database) is away.

    Transient: the worker puts the job back in the queue and tries again a little later,
    posting `waiting` (one line) meanwhile, and gives up with the message after a few tries.
    """

    waiting = "A service Folio needs is not answering"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class GeneratorUnavailable(ServiceUnavailable):
    """The generation server could not be reached, timed out, or broke off an answer."""

    waiting = "The generation server is not answering"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"The generation server at {url} is unreachable ({reason}); "
                         "please try again in a few minutes.", reason)
        self.url = url


class DatabaseUnavailable(ServiceUnavailable):
    """The shared database could not be reached, timed out, or dropped the connection; what
    was being written was rolled back whole."""

    waiting = "The database is not answering"

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"The database at {where} is unreachable ({reason}); "
                         "please try again in a few minutes.", reason)
        self.where = where


class DataFolderError(FolioError):
    """The data folder can't be opened or written (read-only, full, or not ours)."""


class GeneratorCrashed(FolioError):
    """The model's process died (a native crash: a signal such as SIGSEGV, or a hang).

    The worker retries such a job once, in a fresh model process, then gives up with this
    message, so one poisonous question can never put the bot in a crash loop.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The model crashed on this question ({reason}); `folio doctor` says more."
        )
        self.reason = reason

    def __reduce__(self) -> tuple[type[GeneratorCrashed], tuple[str]]:
        return (type(self), (self.reason,))
