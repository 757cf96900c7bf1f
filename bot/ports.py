"""The interface the bot core needs from the answering engine (implemented by `rag.engine`).

Every method is synchronous and slow (it runs models): the worker calls them only from its one
dedicated thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rag.types import (
    Answer,
    CancelCheck,
    DocumentInfo,
    IngestProgressCallback,
    IngestReport,
    ProgressCallback,
    Turn,
)


class AnswerEngine(Protocol):
    """Answers questions over a collection of documents and manages what is indexed."""

    @property
    def model_name(self) -> str: ...

    def answer(
        self,
        question: str,
        *,
        collection: str,
        history: Sequence[Turn] = (),
        on_progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
    ) -> Answer:
        """Answer with citations, or abstain. Raises GenerationCancelled if `cancelled()` turns true."""
        ...

    def ingest_bytes(
        self,
        name: str,
        data: bytes,
        *,
        collection: str,
        on_progress: IngestProgressCallback | None = None,
    ) -> IngestReport:
        """Index one PDF given as bytes (a chat attachment). Bad files are reported, not raised."""
        ...

    def documents(self, collection: str) -> list[DocumentInfo]:
        """What is indexed in the collection."""
        ...

    def forget(self, name: str, *, collection: str) -> DocumentInfo:
        """Remove a document from every store. Raises NotFoundError if there is no such document."""
        ...
