"""The two storage interfaces the engine needs: a document store and a vector index.

The engine, the retriever and the re-embedder see only these, so the embedded default (SQLite
for documents, pages, chunks and keywords; FAISS files for vectors) and the shared one (Postgres
with pgvector, `rag/postgres.py`) are interchangeable, and tests can pass fakes. Both are built
in one place, `rag.backends.open_storage`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from rag.chunk import Chunk
from rag.embed import Vectors
from rag.parse import ParsedDocument
from rag.types import DocumentInfo


@dataclass(frozen=True, slots=True)
class StoredChunk:
    chunk_id: int
    document: str
    page: int
    text: str


class Store(Protocol):
    """Documents, their pages and chunks (with vectors), and keyword search, per collection.

    Every read and write names its collection; nothing crosses between collections. A write
    (`put_document`, `delete_document`) is one transaction, and adds one to the collection's
    `generation`, so a derived vector index can tell it is behind.
    """

    def close(self) -> None: ...

    def migrations(self) -> list[str]: ...

    # documents
    def find_by_sha(self, collection: str, sha256: str) -> DocumentInfo | None: ...

    def document(self, collection: str, name: str) -> DocumentInfo | None: ...

    def documents(self, collection: str) -> list[DocumentInfo]: ...

    def collections(self) -> list[str]: ...

    def put_document(
        self,
        collection: str,
        name: str,
        sha256: str,
        parsed: ParsedDocument,
        chunks: Sequence[Chunk],
        vectors: Vectors,
    ) -> tuple[list[int], list[int]]: ...

    def delete_document(self, collection: str, name: str) -> list[int]: ...

    def generation(self, collection: str) -> int: ...

    # chunks, pages and vectors
    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]: ...

    def vectors(self, ids: Sequence[int], dimension: int) -> dict[int, Vectors]: ...

    def page_text(self, collection: str, name: str, page: int) -> str | None: ...

    def quote_from_image(self, collection: str, name: str, page: int, quote: str) -> bool: ...

    def chunk_ids(self, collection: str) -> list[int]: ...

    def chunk_texts(self, ids: Sequence[int]) -> list[str]: ...

    def raw_vectors(self, ids: Sequence[int]) -> dict[int, bytes]: ...

    def update_vectors(self, ids: Sequence[int], vectors: Vectors) -> None: ...

    def iter_vectors(
        self, collection: str, dimension: int, batch: int = 4096
    ) -> Iterator[tuple[list[int], Vectors]]: ...

    def embedder_identity(self, collection: str) -> str | None: ...

    def set_embedder_identity(self, collection: str, identity: str) -> None: ...

    # keywords
    def term_in_collection(
        self,
        collection: str,
        term: str,
        documents: Sequence[str] | None = None,
        *,
        prefix: bool = False,
    ) -> bool: ...

    def keyword_search(self, collection: str, question: str, limit: int) -> list[int]: ...


class VectorIndex(Protocol):
    """Nearest-neighbour search over chunk vectors, per collection.

    FAISS keeps a copy derived from the store (files, one per collection), so it carries the
    store generation it equals and is reloaded or rebuilt when behind; pgvector searches the
    store's own vector column, so it is never behind and its writes are the store's.
    """

    def locked(self, collection: str) -> AbstractContextManager[None]: ...

    def generation(self, collection: str) -> int | None: ...

    def reload(self, collection: str) -> int | None: ...

    def add(
        self,
        collection: str,
        ids: Sequence[int],
        vectors: Vectors,
        *,
        generation: int | None = None,
    ) -> None: ...

    def remove(
        self, collection: str, ids: Sequence[int], *, generation: int | None = None
    ) -> None: ...

    def replace(
        self,
        collection: str,
        removed: Sequence[int],
        ids: Sequence[int],
        vectors: Vectors,
        *,
        generation: int | None = None,
    ) -> None: ...

    def search(self, collection: str, query: Vectors, limit: int) -> list[tuple[int, float]]: ...

    def ids(self, collection: str) -> list[int]: ...

    def rebuild(
        self,
        collection: str,
        source: Iterator[tuple[list[int], Vectors]],
        *,
        generation: int | None = None,
    ) -> None: ...

    def ensure_consistent(
        self,
        collection: str,
        expected_ids: Sequence[int],
        source: Iterator[tuple[list[int], Vectors]],
        *,
        generation: int | None = None,
    ) -> bool: ...
