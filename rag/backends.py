"""Builds the document store and the vector index the settings ask for (the one place that
knows both back ends): SQLite + FAISS files in the data dir, or a shared Postgres + pgvector."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from config.settings import Settings
from rag.storage import Store, VectorIndex

if TYPE_CHECKING:
    from rag.originals import Originals
    from rag.postgres import PostgresOptions

IndexFactory = Callable[[int], VectorIndex]  # the embedder's dimension -> the index


def postgres_options(settings: Settings) -> PostgresOptions:
    """The shared database's connection settings (`store.*`, the URL from the environment)."""
    from rag.postgres import PostgresOptions

    assert settings.database_url is not None  # the settings validator requires it
    config = settings.store
    return PostgresOptions(
        url=settings.database_url.get_secret_value().strip(),
        pool_size=config.pool_size,
        connect_timeout_s=config.connect_timeout_s,
        pool_timeout_s=config.pool_timeout_s,
        statement_timeout_s=config.statement_timeout_s,
        vector_search=config.vector_search,
        hnsw_ef_search=config.hnsw_ef_search,
    )


def open_originals(settings: Settings, store: Store) -> Originals:
    """Where the uploaded PDFs are kept: this node's data folder, or with the shared Postgres
    store the database too (each node caching what it served in its folder)."""
    from rag.originals import OriginalFiles

    local = OriginalFiles(settings.originals_dir)
    if settings.store.backend != "postgres":
        return local
    from rag.postgres_originals import SharedOriginals
    from rag.postgres_store import PostgresStore

    assert isinstance(store, PostgresStore)
    return SharedOriginals(store.database, local)


def open_store(settings: Settings) -> Store:
    """The document store alone (for commands that need no vectors, like `folio docs`)."""
    return open_storage(settings)[0]


def open_storage(settings: Settings) -> tuple[Store, IndexFactory]:
    """The store, and how to build the vector index once the embedder's dimension is known."""
    if settings.store.backend == "postgres":
        from rag.pgvector_index import PgVectorIndex
        from rag.postgres import PostgresDatabase
        from rag.postgres_store import PostgresStore

        config = settings.store
        store = PostgresStore(PostgresDatabase(postgres_options(settings)))

        def pgvector(dimension: int) -> VectorIndex:
            return PgVectorIndex(
                store, dimension, mode=config.vector_search, ef_search=config.hnsw_ef_search
            )

        return store, pgvector

    from rag.index import FaissIndex
    from rag.store import DocumentStore

    index_dir = settings.index_dir

    def faiss(dimension: int) -> VectorIndex:
        return FaissIndex(index_dir, dimension)

    return DocumentStore(settings.documents_db), faiss
