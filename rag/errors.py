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
