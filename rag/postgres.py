"""The shared Postgres database every Folio node uses (`store.backend = "postgres"`): the
connection pool with its timeouts, and the schema. psycopg is imported only here; the store
(`rag.postgres_store`), the vector index (`rag.pgvector_index`) and the shared history
(`bot.history_postgres`) run their SQL through `PostgresDatabase.transaction`.

The schema is managed by the append-only `_MIGRATIONS`, applied once per database under a
session advisory lock (whichever node starts first), each in one transaction with the row that
records it.

A lost connection, a server that is away, a pool with no free connection within
`pool_timeout_s` or a statement over `statement_timeout_s` raise `DatabaseUnavailable` (one
line, no URL, no password), which the worker retries; the transaction is rolled back whole.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from config.errors import ConfigError
from rag.errors import DatabaseUnavailable
from rag.postgres_terms import rebuild_terms

logger = logging.getLogger(__name__)

# Keys of the advisory locks: one for migrations; collections hash their name with this seed.
MIGRATION_LOCK = 0x466F6C696F  # "Folio"
COLLECTION_SEED = 0x466F

# A migration's step: a statement, or a function given the connection (for what SQL alone
# cannot do, such as tokenizing the stored text again).
Step = str | Callable[[Any], None]

# Append-only: each runs once per database, in one transaction with the row recording it.
# Never edit or reorder one that has shipped; append a new one.
_MIGRATIONS: list[tuple[str, tuple[Step, ...]]] = [
    (
        "m001_documents",
        (
            "CREATE EXTENSION IF NOT EXISTS vector",
            # m001's keyword terms (English Snowball stemming, no stop words); unused since
            # m004, which makes the terms with FTS5's own tokenizer (rag/postgres_terms.py).
            "CREATE TEXT SEARCH DICTIONARY folio_stem (TEMPLATE = snowball, LANGUAGE = english)",
            "CREATE TEXT SEARCH CONFIGURATION folio (COPY = english)",
            """ALTER TEXT SEARCH CONFIGURATION folio ALTER MAPPING FOR asciiword, asciihword,
                hword_asciipart, word, hword, hword_part WITH folio_stem""",
            """CREATE TABLE documents (
                id BIGSERIAL PRIMARY KEY,
                collection TEXT NOT NULL,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                title TEXT NOT NULL DEFAULT '',
                pages INTEGER NOT NULL,
                pages_without_text INTEGER NOT NULL DEFAULT 0,
                pages_from_images INTEGER NOT NULL DEFAULT 0,
                parser TEXT NOT NULL DEFAULT '',
                added_at TEXT NOT NULL,
                UNIQUE (collection, name)
            )""",
            "CREATE INDEX documents_sha ON documents (collection, sha256)",
            """CREATE TABLE pages (
                document_id BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
                page INTEGER NOT NULL,
                text TEXT NOT NULL,
                has_text BOOLEAN NOT NULL,
                image_text TEXT NOT NULL DEFAULT '',
                scanned BOOLEAN NOT NULL DEFAULT false,
                PRIMARY KEY (document_id, page)
            )""",
            # `collection` is repeated here so that searches filter chunks without a join.
            # `embedding` has no fixed dimension: the embedder decides it (and may change).
            """CREATE TABLE chunks (
                id BIGSERIAL PRIMARY KEY,
                document_id BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
                collection TEXT NOT NULL,
                page INTEGER NOT NULL,
                ordinal INTEGER NOT NULL,
                text TEXT NOT NULL,
                from_image BOOLEAN NOT NULL DEFAULT false,
                embedding vector NOT NULL,
                keywords tsvector NOT NULL,
                keyword_count INTEGER NOT NULL DEFAULT 0  -- words indexed (BM25's length)
            )""",
            "CREATE INDEX chunks_document ON chunks (document_id)",
            "CREATE INDEX chunks_collection ON chunks (collection, id)",
            "CREATE INDEX chunks_keywords ON chunks USING gin (keywords)",
            # BM25's statistics per collection, kept in each write's transaction (as FTS5 keeps
            # them in its index): in how many chunks each word occurs, and the totals.
            """CREATE TABLE keyword_terms (
                collection TEXT NOT NULL, lexeme TEXT NOT NULL, chunks INTEGER NOT NULL,
                PRIMARY KEY (collection, lexeme)
            )""",
            """CREATE TABLE keyword_totals (
                collection TEXT PRIMARY KEY, chunks BIGINT NOT NULL, words BIGINT NOT NULL
            )""",
            """CREATE TABLE generations (
                collection TEXT PRIMARY KEY, generation BIGINT NOT NULL
            )""",
            """CREATE TABLE collection_embedders (
                collection TEXT PRIMARY KEY, identity TEXT NOT NULL
            )""",
        ),
    ),
]
_MIGRATIONS.append((
    # Conversation history shared by every node (bot/history_postgres.py): one row per finished
    # job, the columns of bot.history.HistoryRecord.
    "m002_history",
    (
        """CREATE TABLE history (
            id BIGSERIAL PRIMARY KEY,
            job_id BIGINT NOT NULL,
            kind TEXT NOT NULL, status TEXT NOT NULL, platform TEXT NOT NULL,
            collection TEXT NOT NULL, channel TEXT NOT NULL, thread TEXT NOT NULL,
            user_id TEXT NOT NULL, message_id TEXT NOT NULL, reply_to TEXT NOT NULL,
            question TEXT NOT NULL, answer TEXT NOT NULL,
            abstained BOOLEAN NOT NULL DEFAULT false, shortened BOOLEAN NOT NULL DEFAULT false,
            citations TEXT NOT NULL DEFAULT '[]', retrieved TEXT NOT NULL DEFAULT '[]',
            error TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',
            tokens INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,
            queue_wait_s DOUBLE PRECISION, retrieval_s DOUBLE PRECISION,
            first_token_s DOUBLE PRECISION, generation_s DOUBLE PRECISION,
            engine_s DOUBLE PRECISION, total_s DOUBLE PRECISION,
            asked_at DOUBLE PRECISION NOT NULL, answered_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX history_conversation ON history (platform, collection, channel, thread, id)",
        "CREATE INDEX history_user ON history (platform, user_id, id)",
    ),
))
_MIGRATIONS.append((
    # The PDFs as uploaded (rag/postgres_originals.py), so a citation's page opens on every node.
    "m003_originals",
    (
        """CREATE TABLE originals (
            collection TEXT NOT NULL, sha256 TEXT NOT NULL, data BYTEA NOT NULL,
            PRIMARY KEY (collection, sha256)
        )""",
    ),
))
_MIGRATIONS.append((
    # Keyword terms exactly as the embedded store's FTS5 makes them (rag/postgres_terms.py):
    # the chunks' tsvectors again, and per-document posting lists from which BM25 is computed
    # without reading every matching chunk (document frequency = the lists' lengths, so the
    # per-term counts of m001 go).
    "m004_fts5_terms",
    (
        """CREATE TABLE keyword_postings (
            document_id BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            collection TEXT NOT NULL,
            term TEXT NOT NULL,
            chunks BIGINT[] NOT NULL,  -- the document's chunks that have the term
            counts INTEGER[] NOT NULL,  -- how often, in each
            lengths INTEGER[] NOT NULL  -- each chunk's terms in all (BM25's D)
        )""",
        "CREATE INDEX keyword_postings_term ON keyword_postings (collection, term)",
        "CREATE INDEX keyword_postings_document ON keyword_postings (document_id)",
        "DROP TABLE keyword_terms",
        rebuild_terms,
    ),
))
_MIGRATIONS.append((
    # Vectors inside the chunk's row: pgvector's default storage (EXTERNAL) put each one in the
    # TOAST table, so an exact search fetched 100k TOAST rows for 100k chunks (490 ms; 70 ms
    # with the vectors in the row). MAIN keeps them in the row unless a row cannot fit a page;
    # the UPDATE moves the existing ones (a new value each, the same float32s).
    "m005_vectors_in_row",
    (
        "ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE MAIN",
        "UPDATE chunks SET embedding = embedding::real[]::vector",
    ),
))
_MIGRATIONS.append((
    # Each history row names the node that answered it (bot.sqlite's `shared_history.node`): a
    # node copies its rows again after an outage or a crash (bot/history_sync.py), and the
    # unique key makes that copy land once. Job ids alone collide between nodes with their own
    # SQLite queues. Rows from before have no node. Reads order by answer time, since a row
    # copied late gets a later id than rows answered after it.
    "m006_history_node",
    (
        "ALTER TABLE history ADD COLUMN node TEXT",
        "CREATE UNIQUE INDEX history_node_job ON history (node, job_id)",
        "CREATE INDEX history_answered ON history (answered_at)",
    ),
))
_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    url: str
    pool_size: int = 4
    connect_timeout_s: float = 5.0
    pool_timeout_s: float = 10.0
    statement_timeout_s: float = 30.0
    vector_search: Literal["exact", "hnsw"] = "exact"
    hnsw_ef_search: int = 100


def _driver() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise ConfigError(
            'store.backend = "postgres" needs psycopg: pip install "folio[postgres]" '
            '(psycopg[binary,pool] and pgvector)'
        ) from exc
    return psycopg, psycopg_pool


def _register_vector() -> Callable[[Any], None]:
    try:
        from pgvector.psycopg import register_vector
    except ImportError as exc:
        raise ConfigError(
            'store.backend = "postgres" needs pgvector\'s Python package: '
            'pip install "folio[postgres]"'
        ) from exc
    return register_vector


def describe_url(url: str) -> str:
    """host:port/database of a URL, for messages: never the user or the password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


class PostgresDatabase:
    """A connection pool with timeouts, and the schema migrations."""

    def __init__(self, options: PostgresOptions) -> None:
        psycopg, pools = _driver()
        register_vector = _register_vector()
        self._psycopg = psycopg
        self._options = options
        self.where = describe_url(options.url)
        self._unavailable: tuple[type[BaseException], ...] = (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            pools.PoolTimeout,
        )
        statement_ms = int(options.statement_timeout_s * 1000)
        self._migrate_direct()

        def configure(connection: Any) -> None:
            register_vector(connection)
            connection.commit()  # leave the connection idle, as the pool wants it

        self._pool = pools.ConnectionPool(
            options.url,
            min_size=1,
            max_size=options.pool_size,
            timeout=options.pool_timeout_s,
            kwargs={
                "connect_timeout": max(1, round(options.connect_timeout_s)),
                "options": f"-c statement_timeout={statement_ms}",
                "application_name": "folio",
            },
            configure=configure,
            check=pools.ConnectionPool.check_connection,  # a server restart costs no request
            open=False,
            name="folio",
        )
        try:
            self._pool.open(wait=True, timeout=options.connect_timeout_s + options.pool_timeout_s)
        except self._unavailable as exc:
            self._pool.close()
            raise DatabaseUnavailable(self.where, _reason(exc)) from None

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A pooled connection in one transaction (committed on success, rolled back on any
        error); a database that is away becomes `DatabaseUnavailable`."""
        try:
            with self._pool.connection() as connection:
                yield connection
        except self._unavailable as exc:
            raise DatabaseUnavailable(self.where, _reason(exc)) from None

    def _migrate_direct(self) -> None:
        """Apply the migrations this database has not had yet, once, whoever starts first:
        every node takes the same session advisory lock, then checks inside the lock."""
        psycopg = self._psycopg
        try:
            connection = psycopg.connect(
                self._options.url,
                connect_timeout=max(1, round(self._options.connect_timeout_s)),
                autocommit=True,
                application_name="folio-migrate",
            )
        except self._unavailable as exc:
            raise DatabaseUnavailable(self.where, _reason(exc)) from None
        with connection:
            connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                connection.execute(_MIGRATIONS_TABLE)
                for name, statements in _MIGRATIONS:
                    with connection.transaction():
                        done = connection.execute(
                            "SELECT 1 FROM schema_migrations WHERE name = %s", (name,)
                        ).fetchone()
                        if done:
                            continue
                        for step in statements:
                            if callable(step):
                                step(connection)
                            else:
                                connection.execute(step)
                        connection.execute(
                            "INSERT INTO schema_migrations (name) VALUES (%s)", (name,)
                        )
                        logger.info("database %s: applied migration %s", self.where, name)
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def migrations(self) -> list[str]:
        with self.transaction() as db:
            rows = db.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
        return [r[0] for r in rows]


def _reason(exc: BaseException) -> str:
    """The first line of a driver error, without anything that could be a URL."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"\S+://\S+", "<url>", text)[:200]
