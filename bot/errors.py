"""Errors of the bot core, plus re-exports so callers import every user-facing error from here."""

from __future__ import annotations

from config.errors import ConfigError, FolioError
from rag.errors import (
    BadDocumentError,
    DatabaseUnavailable,
    GenerationCancelled,
    GeneratorCrashed,
    GeneratorUnavailable,
    NotFoundError,
    ServiceUnavailable,
)

__all__ = [
    "BadDocumentError",
    "ConfigError",
    "DatabaseUnavailable",
    "DuplicateJobError",
    "FolioError",
    "GenerationCancelled",
    "GeneratorCrashed",
    "GeneratorUnavailable",
    "NotFoundError",
    "PermissionDeniedError",
    "QueueFullError",
    "ServiceUnavailable",
]


class QueueFullError(FolioError):
    """The queue (global, or this user's share) is at its cap; nothing was queued."""


class DuplicateJobError(FolioError):
    """A job with this idempotency key was already accepted (a platform retry); nothing was queued."""


class PermissionDeniedError(FolioError):
    """The user may not do this (for example, a non-admin tried to ingest or forget)."""
