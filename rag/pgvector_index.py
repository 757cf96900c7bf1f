"""`rag.storage.VectorIndex` on pgvector: nearest chunks by inner product, in the store's own
`chunks.embedding` column (`rag.postgres_store`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import numpy as np

from rag.embed import Vectors
from rag.postgres import MIGRATION_LOCK
from rag.postgres_store import PostgresStore


class PgVectorIndex:
    """`rag.storage.VectorIndex` over the store's own `chunks.embedding` column.

    Nothing is derived, so nothing can be behind: the generation is always the store's, and
    adds and removes happened in the document's own transaction (they are no-ops here).
    `exact` scans the collection's vectors; `hnsw` uses an HNSW index per dimension (built on
    first use; approximate, and filtered by collection after the graph search, so a collection
    for which that leaves fewer than `limit` is searched exactly instead).
    """

    def __init__(
        self,
        store: PostgresStore,
        dimension: int,
        *,
        mode: Literal["exact", "hnsw"] = "exact",
        ef_search: int = 100,
    ) -> None:
        self._store = store
        self._db = store.database
        self._dimension = int(dimension)
        self._mode = mode
        self._ef_search = int(ef_search)
        if mode == "hnsw":
            self._create_hnsw()

    def _create_hnsw(self) -> None:
        d = self._dimension
        with self._db.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK + d,))
            # Building the graph over an existing large table takes minutes (measured: over 10
            # on 100k chunks on 2 busy cores), far past the statement timeout of queries.
            db.execute("SET LOCAL statement_timeout = 0")
            db.execute("SET LOCAL maintenance_work_mem = '256MB'")
            db.execute(
                f"""CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw_{d} ON chunks
                    USING hnsw ((embedding::vector({d})) vector_ip_ops)
                    WHERE vector_dims(embedding) = {d}"""
            )

    def locked(self, collection: str) -> AbstractContextManager[None]:
        return nullcontext()  # the store's write transaction takes the collection's lock

    def generation(self, collection: str) -> int | None:
        return self._store.generation(collection)

    def reload(self, collection: str) -> int | None:
        return self._store.generation(collection)

    def add(
        self, collection: str, ids: Sequence[int], vectors: Vectors, *,
        generation: int | None = None,
    ) -> None:
        return None

    def remove(
        self, collection: str, ids: Sequence[int], *, generation: int | None = None
    ) -> None:
        return None

    def replace(
        self, collection: str, removed: Sequence[int], ids: Sequence[int], vectors: Vectors, *,
        generation: int | None = None,
    ) -> None:
        return None

    def search(self, collection: str, query: Vectors, limit: int) -> list[tuple[int, float]]:
        """The `limit` chunks of the collection with the largest inner product (cosine: the
        vectors are normalised) with the query."""
        d = self._dimension
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        with self._db.transaction() as db:
            rows = []
            if self._mode == "hnsw":
                db.execute(f"SET LOCAL hnsw.ef_search = {max(self._ef_search, limit)}")
                rows = db.execute(
                    f"""SELECT id, -((embedding::vector({d})) <#> %s::vector({d})) FROM chunks
                        WHERE vector_dims(embedding) = {d} AND collection = %s
                        ORDER BY (embedding::vector({d})) <#> %s::vector({d}) LIMIT %s""",
                    (vector, collection, vector, limit),
                    binary=True,
                ).fetchall()
            if len(rows) < limit:
                # Exact: the mode, or a collection too small a part of the table for the graph
                # search (it finds ef_search neighbours overall, then drops other collections').
                db.execute("SET LOCAL enable_indexscan = off")  # never an approximate index
                rows = db.execute(
                    """SELECT id, -(embedding <#> %s) AS score FROM chunks WHERE collection = %s
                       ORDER BY 2 DESC LIMIT %s""",
                    (vector, collection, limit),
                    binary=True,
                ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def ids(self, collection: str) -> list[int]:
        return self._store.chunk_ids(collection)

    def rebuild(
        self, collection: str, source: Iterator[tuple[list[int], Vectors]], *,
        generation: int | None = None,
    ) -> None:
        return None

    def ensure_consistent(
        self, collection: str, expected_ids: Sequence[int],
        source: Iterator[tuple[list[int], Vectors]], *, generation: int | None = None,
    ) -> bool:
        return False
