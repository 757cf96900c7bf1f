"""The document store: documents, pages, chunks, their vectors and a keyword index, in SQLite.

SQLite is the source of truth. The FAISS index (rag/index.py) is derived from the vectors kept
here, so it can always be rebuilt. Keyword search is FTS5 with BM25 ranking, one FTS5 table per
collection: BM25 weighs a word by how rare it is among the chunks of its table, so one shared
table let every other collection's documents (another guild's, another workspace's) move a
collection's ranking.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rag.chunk import Chunk
from rag.embed import Vectors
from rag.errors import DataFolderError
from rag.normalize import FUNCTION_WORDS
from rag.parse import ParsedDocument
from rag.sqlite_wal import enter_wal_mode
from rag.storage import StoredChunk
from rag.types import DocumentInfo

# How long a statement waits for another process's write lock before giving up.
_BUSY_TIMEOUT_S = 5.0

# The first release's schema; everything after it is a recorded migration below.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    pages INTEGER NOT NULL,
    pages_without_text INTEGER NOT NULL DEFAULT 0,
    added_at TEXT NOT NULL,
    UNIQUE (collection, name)
);
CREATE INDEX IF NOT EXISTS documents_sha ON documents (collection, sha256);
CREATE TABLE IF NOT EXISTS pages (
    document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    page INTEGER NOT NULL,
    text TEXT NOT NULL,
    has_text INTEGER NOT NULL,
    PRIMARY KEY (document_id, page)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    page INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
"""
# (The first release also had one keyword table for all collections, `chunks_fts`; migration
# m004 moves its rows into the per-collection tables below and drops it.)

# How the keyword index splits and stems words (the Postgres store makes its terms with it too).
FTS5_TOKENIZE = "porter unicode61 remove_diacritics 2"

# A collection's keyword index: `keywords_<id>`, the id from `keyword_indexes` (a collection's
# name never goes into SQL). The label and text of each chunk, under the chunk's id.
_KEYWORD_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5 (text, tokenize = '{tokenize}')"
)


def _keyword_table(db: sqlite3.Connection, collection: str, *, create: bool) -> str | None:
    """The name of the collection's FTS5 table (made on first write with `create`; None if the
    collection has none yet)."""
    row = db.execute(
        "SELECT id FROM keyword_indexes WHERE collection = ?", (collection,)
    ).fetchone()
    if row is None:
        if not create:
            return None
        row = (db.execute(
            "INSERT INTO keyword_indexes (collection) VALUES (?)", (collection,)
        ).lastrowid,)
    table = f"keywords_{int(row[0])}"
    if create:
        db.execute(_KEYWORD_TABLE.format(table=table, tokenize=FTS5_TOKENIZE))
    return table


def _split_keyword_index(db: sqlite3.Connection) -> None:
    """m004: the shared `chunks_fts` table's rows, each into its collection's own table."""
    shared = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunks_fts'"
    ).fetchone()
    if shared is None:
        return
    for (collection,) in db.execute("SELECT DISTINCT collection FROM documents").fetchall():
        table = _keyword_table(db, collection, create=True)
        db.execute(
            f"""INSERT INTO {table} (rowid, text)
                SELECT f.rowid, f.text FROM chunks_fts f JOIN chunks c ON c.id = f.rowid
                JOIN documents d ON d.id = c.document_id WHERE d.collection = ?""",
            (collection,),
        )
    db.execute("DROP TABLE chunks_fts")


# Additive schema changes after the first release, in order; each runs once per database file, in
# one transaction with the row that records it in `schema_migrations`. Never edit or reorder one
# that has shipped: append a new one.
_MIGRATIONS: list[tuple[str, tuple[str | Callable[[sqlite3.Connection], None], ...]]] = [
    (
        "m001_text_from_images",
        (
            # what OCR read from the page's image or figures (pages.text holds all of it)
            "ALTER TABLE pages ADD COLUMN image_text TEXT NOT NULL DEFAULT ''",
            # the whole page came from its image (a scan)
            "ALTER TABLE pages ADD COLUMN scanned INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE chunks ADD COLUMN from_image INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE documents ADD COLUMN pages_from_images INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE documents ADD COLUMN parser TEXT NOT NULL DEFAULT ''",
        ),
    ),
    (
        # Folio 0.1 created these two unrecorded (IF NOT EXISTS at every open), so a file from
        # then already has them: IF NOT EXISTS keeps this one a no-op there.
        "m002_generations",
        (
            # document writes per collection, so a process sees that its vector index is behind
            """CREATE TABLE IF NOT EXISTS generations (
                collection TEXT PRIMARY KEY, generation INTEGER NOT NULL
            )""",
        ),
    ),
    (
        "m003_collection_embedders",
        (
            # what made each collection's vectors (rag.embed.identity_of)
            """CREATE TABLE IF NOT EXISTS collection_embedders (
                collection TEXT PRIMARY KEY, identity TEXT NOT NULL
            )""",
        ),
    ),
    (
        "m004_keyword_index_per_collection",
        (
            """CREATE TABLE IF NOT EXISTS keyword_indexes (
                id INTEGER PRIMARY KEY, collection TEXT NOT NULL UNIQUE
            )""",
            _split_keyword_index,
        ),
    ),
]
_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    name TEXT PRIMARY KEY, applied_at TEXT NOT NULL
)"""
_MATCH_NOISE = re.compile(r"[^\w]+", re.UNICODE)

_STOPWORDS = FUNCTION_WORDS | frozenset(
    # question words that would only add noise to a keyword search
    [
        "about",
        "according",
        "authors",
        "describe",
        "described",
        "doing",
        "done",
        "papers",
        "pdf",
        "s",
        "said",
        "say",
        "says",
        "study",
        "survey",
        "tell",
        "whom",
        "why",
        "your",
    ]
)
_WORD = re.compile(r"[\w][\w.%-]*[\w%]|[\w]", re.UNICODE)


def question_terms(question: str) -> list[str]:
    """The distinct content terms of a question, lower case, in order."""
    terms: list[str] = []
    for word in _WORD.findall(question.lower()):
        word = word.strip(".-")
        if len(word) < 2 or word in _STOPWORDS or word in terms:
            continue
        terms.append(word)
    return terms


def keyword_query(question: str) -> str:
    """Turn a free-text question into a safe FTS5 query: quoted terms joined by OR."""
    terms = question_terms(question)
    return " OR ".join('"' + t.replace('"', "") + '"' for t in terms[:32])


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


__all__ = ["FTS5_TOKENIZE", "DocumentStore", "StoredChunk", "keyword_query", "question_terms"]


class DocumentStore:
    """The embedded `rag.storage.Store`: one SQLite file, one connection serialised by a lock
    (thread-safe), keyword search by FTS5 BM25."""

    def __init__(self, path: Path) -> None:
        db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=_BUSY_TIMEOUT_S
            )
            enter_wal_mode(db, within_s=_BUSY_TIMEOUT_S)  # another process may be opening it too
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            self._db = db
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()  # the file stays open otherwise, until the error is collected
            reason = "read-only file system" if _read_only(path.parent) else (
                getattr(exc, "strerror", None) or str(exc)
            )
            raise DataFolderError(
                f"cannot open the document database {path} ({reason}); "
                "check that the data folder is writable and has free space"
            ) from exc
        self._db = db
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        """Apply the migrations this file has not had yet (another process may race us: the
        check runs inside the write transaction, so each one is applied once)."""
        self._db.execute(_MIGRATIONS_TABLE)
        for name, statements in _MIGRATIONS:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                done = self._db.execute(
                    "SELECT 1 FROM schema_migrations WHERE name = ?", (name,)
                ).fetchone()
                if not done:
                    for statement in statements:
                        if callable(statement):
                            statement(self._db)
                        else:
                            self._db.execute(statement)
                    self._db.execute(
                        "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                        (name, datetime.now(UTC).isoformat(timespec="seconds")),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def migrations(self) -> list[str]:
        """Names of the schema migrations applied to this file, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM schema_migrations ORDER BY rowid"
            ).fetchall()
        return [r[0] for r in rows]

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- documents -------------------------------------------------------------------------

    def find_by_sha(self, collection: str, sha256: str) -> DocumentInfo | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name FROM documents WHERE collection = ? AND sha256 = ?",
                (collection, sha256),
            ).fetchone()
        return self.document(collection, row[0]) if row else None

    def document(self, collection: str, name: str) -> DocumentInfo | None:
        with self._lock:
            row = self._db.execute(
                """SELECT d.name, d.pages, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id),
                          d.sha256, d.added_at, d.pages_without_text, d.pages_from_images
                   FROM documents d WHERE d.collection = ? AND d.name = ?""",
                (collection, name),
            ).fetchone()
        return DocumentInfo(*row) if row else None

    def documents(self, collection: str) -> list[DocumentInfo]:
        with self._lock:
            rows = self._db.execute(
                """SELECT d.name, d.pages, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id),
                          d.sha256, d.added_at, d.pages_without_text, d.pages_from_images
                   FROM documents d WHERE d.collection = ? ORDER BY d.name""",
                (collection,),
            ).fetchall()
        return [DocumentInfo(*row) for row in rows]

    def collections(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT collection FROM documents").fetchall()
        return [r[0] for r in rows]

    def put_document(
        self,
        collection: str,
        name: str,
        sha256: str,
        parsed: ParsedDocument,
        chunks: Sequence[Chunk],
        vectors: Vectors,
    ) -> tuple[list[int], list[int]]:
        """Insert a document (replacing one of the same name) in one transaction.

        Returns (ids of the chunks removed with the old version, ids of the new chunks).
        """
        added_at = datetime.now(UTC).isoformat(timespec="seconds")
        with self._transaction() as db:
            removed = self._delete(db, collection, name) or []
            self._bump(db, collection)
            cursor = db.execute(
                """INSERT INTO documents (collection, name, sha256, title, pages,
                       pages_without_text, added_at, pages_from_images, parser)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    collection,
                    name,
                    sha256,
                    parsed.title,
                    len(parsed.pages),
                    parsed.pages_without_text,
                    added_at,
                    parsed.pages_from_images,
                    parsed.parser,
                ),
            )
            document_id = cursor.lastrowid
            db.executemany(
                """INSERT INTO pages (document_id, page, text, has_text, image_text, scanned)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                [
                    (
                        document_id,
                        p.number,
                        p.stored_text,
                        int(p.has_text),
                        p.image_text,
                        int(p.scanned),
                    )
                    for p in parsed.pages
                ],
            )
            keywords = _keyword_table(db, collection, create=True)
            ids: list[int] = []
            for chunk, vector in zip(chunks, vectors, strict=True):
                cursor = db.execute(
                    """INSERT INTO chunks (document_id, page, ordinal, text, vector, from_image)
                       VALUES (?, ?, ?, ?, ?, ?)""",
                    (
                        document_id,
                        chunk.page,
                        chunk.ordinal,
                        chunk.text,
                        vector.tobytes(),
                        int(chunk.from_image),
                    ),
                )
                chunk_id = int(cursor.lastrowid or 0)
                ids.append(chunk_id)
                db.execute(
                    f"INSERT INTO {keywords} (rowid, text) VALUES (?, ?)",
                    (chunk_id, f"{_label(name, parsed.title)} {chunk.text}"),
                )
        return removed, ids

    def delete_document(self, collection: str, name: str) -> list[int]:
        """Delete a document; return the ids of its chunks (for the vector index)."""
        with self._transaction() as db:
            removed = self._delete(db, collection, name)
            if removed is None:
                return []
            self._bump(db, collection)
            return removed

    def generation(self, collection: str) -> int:
        """How many document writes the collection has had: every put and delete adds one in
        its own transaction, so a process whose vector index was built at another generation
        knows that another process changed the documents since (0: never written)."""
        with self._lock:
            row = self._db.execute(
                "SELECT generation FROM generations WHERE collection = ?", (collection,)
            ).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _bump(db: sqlite3.Connection, collection: str) -> None:
        db.execute(
            """INSERT INTO generations (collection, generation) VALUES (?, 1)
               ON CONFLICT (collection) DO UPDATE SET generation = generation + 1""",
            (collection,),
        )

    @staticmethod
    def _delete(db: sqlite3.Connection, collection: str, name: str) -> list[int] | None:
        """Delete a document and return its chunk ids (None if there was no such document)."""
        row = db.execute(
            "SELECT id FROM documents WHERE collection = ? AND name = ?", (collection, name)
        ).fetchone()
        if row is None:
            return None
        ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE document_id = ?", row)]
        keywords = _keyword_table(db, collection, create=False)
        if keywords is not None:
            db.executemany(f"DELETE FROM {keywords} WHERE rowid = ?", [(i,) for i in ids])
        db.execute("DELETE FROM documents WHERE id = ?", row)
        return ids

    # --- chunks and pages -------------------------------------------------------------------

    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"""SELECT c.id, d.name, c.page, c.text FROM chunks c
                    JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})""",
                list(ids),
            ).fetchall()
        return {r[0]: StoredChunk(*r) for r in rows}

    def vectors(self, ids: Sequence[int], dimension: int) -> dict[int, Vectors]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, vector FROM chunks WHERE id IN ({marks})", list(ids)
            ).fetchall()
        return {r[0]: np.frombuffer(r[1], dtype=np.float32, count=dimension) for r in rows}

    def page_text(self, collection: str, name: str, page: int) -> str | None:
        with self._lock:
            row = self._db.execute(
                """SELECT p.text FROM pages p JOIN documents d ON d.id = p.document_id
                   WHERE d.collection = ? AND d.name = ? AND p.page = ?""",
                (collection, name, page),
            ).fetchone()
        return row[0] if row else None

    def quote_from_image(self, collection: str, name: str, page: int, quote: str) -> bool:
        """Whether a quote of a page comes from text read off its image (OCR): always on a
        scanned page; on a text page, when the quote lies in what was read from its figures."""
        with self._lock:
            row = self._db.execute(
                """SELECT p.scanned, p.image_text FROM pages p
                   JOIN documents d ON d.id = p.document_id
                   WHERE d.collection = ? AND d.name = ? AND p.page = ?""",
                (collection, name, page),
            ).fetchone()
        if row is None or not row[1]:
            return False
        if row[0]:
            return True
        wanted = _for_match(quote)
        return bool(wanted) and wanted in _for_match(row[1])

    def chunk_ids(self, collection: str) -> list[int]:
        with self._lock:
            rows = self._db.execute(
                """SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id
                   WHERE d.collection = ? ORDER BY c.id""",
                (collection,),
            ).fetchall()
        return [r[0] for r in rows]

    def embedder_identity(self, collection: str) -> str | None:
        """What made this collection's vectors; None for a store written before it was kept."""
        with self._lock:
            row = self._db.execute(
                "SELECT identity FROM collection_embedders WHERE collection = ?", (collection,)
            ).fetchone()
        return str(row[0]) if row else None

    def set_embedder_identity(self, collection: str, identity: str) -> None:
        with self._transaction() as db:
            db.execute(
                """INSERT INTO collection_embedders (collection, identity) VALUES (?, ?)
                   ON CONFLICT (collection) DO UPDATE SET identity = excluded.identity""",
                (collection, identity),
            )

    def chunk_texts(self, ids: Sequence[int]) -> list[str]:
        """The texts of chunks, in the order of `ids` (every id must exist)."""
        found = {i: c.text for i, c in self.chunks(ids).items()}
        return [found[i] for i in ids]

    def raw_vectors(self, ids: Sequence[int]) -> dict[int, bytes]:
        """Stored vector bytes as written (any dimension): to compare with a new embedder."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, vector FROM chunks WHERE id IN ({marks})", list(ids)
            ).fetchall()
        return {r[0]: bytes(r[1]) for r in rows}

    def update_vectors(self, ids: Sequence[int], vectors: Vectors) -> None:
        """Replace the vectors of existing chunks (one transaction)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE chunks SET vector = ? WHERE id = ?",
                [(np.ascontiguousarray(v, dtype=np.float32).tobytes(), i)
                 for i, v in zip(ids, vectors, strict=True)],
            )

    def iter_vectors(
        self, collection: str, dimension: int, batch: int = 4096
    ) -> Iterator[tuple[list[int], Vectors]]:
        """All (ids, vectors) of a collection in bounded batches (to rebuild the vector index)."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    """SELECT c.id, c.vector FROM chunks c JOIN documents d ON d.id = c.document_id
                       WHERE d.collection = ? AND c.id > ? ORDER BY c.id LIMIT ?""",
                    (collection, last, batch),
                ).fetchall()
            if not rows:
                return
            ids = [r[0] for r in rows]
            vectors = np.stack(
                [np.frombuffer(r[1], dtype=np.float32, count=dimension) for r in rows]
            )
            yield ids, vectors
            last = ids[-1]

    def term_in_collection(
        self,
        collection: str,
        term: str,
        documents: Sequence[str] | None = None,
        *,
        prefix: bool = False,
    ) -> bool:
        """Whether any chunk of the collection (or of the named documents in it) contains the
        term (same tokenizer as search); with `prefix`, any word that starts with it."""
        query = keyword_query(term)
        if not query:
            return True
        if prefix:
            query = " OR ".join(f"{part}*" for part in query.split(" OR "))
        names = list(dict.fromkeys(documents or ()))
        with self._lock:
            keywords = _keyword_table(self._db, collection, create=False)
            if keywords is None:
                return False
            if names:
                row = self._db.execute(
                    f"""SELECT 1 FROM {keywords} f
                        JOIN chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.document_id
                        WHERE {keywords} MATCH ? AND d.name IN ({', '.join('?' * len(names))})
                        LIMIT 1""",
                    (query, *names),
                ).fetchone()
            else:
                row = self._db.execute(
                    f"SELECT 1 FROM {keywords} WHERE {keywords} MATCH ? LIMIT 1", (query,)
                ).fetchone()
        return row is not None

    def keyword_search(self, collection: str, question: str, limit: int) -> list[int]:
        """Chunk ids ranked by BM25 for the question's terms, within one collection."""
        query = keyword_query(question)
        if not query:
            return []
        with self._lock:
            keywords = _keyword_table(self._db, collection, create=False)
            if keywords is None:
                return []
            rows = self._db.execute(
                f"""SELECT rowid FROM {keywords} WHERE {keywords} MATCH ?
                    ORDER BY bm25({keywords}) LIMIT ?""",
                (query, limit),
            ).fetchall()
        return [r[0] for r in rows]


def _for_match(text: str) -> str:
    return " ".join(_MATCH_NOISE.sub(" ", text.lower()).split())


def _label(name: str, title: str) -> str:
    """Words that name the document (file stem and title), indexed with each of its chunks."""
    stem = Path(name).stem
    words = re.sub(r"[_\-.]+", " ", stem)
    return f"{words} {title}".strip()
