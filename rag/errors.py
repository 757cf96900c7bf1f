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


class GeneratorUnavailable(FolioError):
    """The generation server could not be reached, timed out, or broke off an answer.

    Transient: the worker puts the job back in the queue and tries again a little later.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"The generation server at {url} is unreachable ({reason}); "
                         "please try again in a few minutes.")
        self.url = url
        self.reason = reason


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
