"""`rag.storage.Store` on the shared Postgres database (`rag.postgres`): documents, pages,
chunks with their vectors, and keyword search ranked by BM25.

Why it is correct across nodes: a document write (put, replace, forget) is one transaction that
first takes a transaction-level advisory lock on its collection, so writers of a collection take
turns and every reader sees the old version or the new one, never half of either. Vectors live
in the chunks table beside their text, so there is no derived index to fall behind: a document
committed on one node is searchable from every node at once. Every query names its collection.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from rag.chunk import Chunk
from rag.embed import Vectors
from rag.parse import ParsedDocument
from rag.postgres import COLLECTION_SEED, PostgresDatabase
from rag.postgres_terms import (
    Fts5Terms,
    any_query,
    count_totals,
    phrase_count,
    tsvector_literal,
    write_postings,
)
from rag.storage import StoredChunk
from rag.store import _for_match, _label, question_terms
from rag.types import DocumentInfo


def _array(value: Any) -> Vectors:
    """A stored vector (pgvector's `Vector`) as float32."""
    return np.asarray(value.to_numpy(), dtype=np.float32)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_DOCUMENT_COLUMNS = """d.name, d.pages, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id),
    d.sha256, d.added_at, d.pages_without_text, d.pages_from_images"""


def _info(row: Sequence[Any]) -> DocumentInfo:
    return DocumentInfo(row[0], int(row[1]), int(row[2]), row[3], row[4], int(row[5]), int(row[6]))


class PostgresStore:
    """`rag.storage.Store` on Postgres (see the module docstring)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database
        self._terms = Fts5Terms()

    @property
    def database(self) -> PostgresDatabase:
        return self._db

    def close(self) -> None:
        self._db.close()
        self._terms.close()

    def migrations(self) -> list[str]:
        return self._db.migrations()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._db.transaction() as db:
            return db.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._db.transaction() as db:
            return list(db.execute(sql, params).fetchall())

    # --- documents -------------------------------------------------------------------------

    def find_by_sha(self, collection: str, sha256: str) -> DocumentInfo | None:
        row = self._one(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents d "
            "WHERE d.collection = %s AND d.sha256 = %s ORDER BY d.id LIMIT 1",
            (collection, sha256),
        )
        return _info(row) if row else None

    def document(self, collection: str, name: str) -> DocumentInfo | None:
        row = self._one(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.collection = %s AND d.name = %s",
            (collection, name),
        )
        return _info(row) if row else None

    def documents(self, collection: str) -> list[DocumentInfo]:
        rows = self._all(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.collection = %s "
            "ORDER BY d.name",
            (collection,),
        )
        return [_info(r) for r in rows]

    def collections(self) -> list[str]:
        return [r[0] for r in self._all("SELECT DISTINCT collection FROM documents")]

    @staticmethod
    def _lock_collection(db: Any, collection: str) -> None:
        """Writers of one collection take turns (across nodes); released at commit."""
        db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))",
            (collection, COLLECTION_SEED),
        )

    @staticmethod
    def _bump(db: Any, collection: str) -> None:
        db.execute(
            """INSERT INTO generations (collection, generation) VALUES (%s, 1)
               ON CONFLICT (collection) DO UPDATE SET generation = generations.generation + 1""",
            (collection,),
        )

    @staticmethod
    def _delete(db: Any, collection: str, name: str) -> list[int] | None:
        row = db.execute(
            "SELECT id FROM documents WHERE collection = %s AND name = %s", (collection, name)
        ).fetchone()
        if row is None:
            return None
        ids = [r[0] for r in db.execute(
            "SELECT id FROM chunks WHERE document_id = %s ORDER BY id", (row[0],)
        ).fetchall()]
        count_totals(db, collection, row[0], -1)
        db.execute("DELETE FROM documents WHERE id = %s", (row[0],))  # cascades
        return [int(i) for i in ids]

    def put_document(
        self,
        collection: str,
        name: str,
        sha256: str,
        parsed: ParsedDocument,
        chunks: Sequence[Chunk],
        vectors: Vectors,
    ) -> tuple[list[int], list[int]]:
        """Insert a document, replacing one of the same name, in one transaction."""
        label = _label(name, parsed.title)
        with self._db.transaction() as db:
            self._lock_collection(db, collection)
            removed = self._delete(db, collection, name) or []
            self._bump(db, collection)
            document_id = db.execute(
                """INSERT INTO documents (collection, name, sha256, title, pages,
                       pages_without_text, added_at, pages_from_images, parser)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (collection, name, sha256, parsed.title, len(parsed.pages),
                 parsed.pages_without_text, _now(), parsed.pages_from_images, parsed.parser),
            ).fetchone()[0]
            with db.cursor() as cursor:
                cursor.executemany(
                    """INSERT INTO pages (document_id, page, text, has_text, image_text, scanned)
                       VALUES (%s, %s, %s, %s, %s, %s)""",
                    [(document_id, p.number, p.stored_text, p.has_text, p.image_text, p.scanned)
                     for p in parsed.pages],
                )
                tokens = self._terms.tokens([f"{label} {chunk.text}" for chunk in chunks])
                rows = [
                    (document_id, collection, chunk.page, chunk.ordinal, chunk.text,
                     chunk.from_image, np.asarray(vector, dtype=np.float32),
                     tsvector_literal(terms), len(terms))
                    for chunk, vector, terms in zip(chunks, vectors, tokens, strict=True)
                ]
                ids: list[int] = []
                if rows:  # one round trip for all of them (psycopg pipelines executemany)
                    cursor.executemany(
                        """INSERT INTO chunks (document_id, collection, page, ordinal, text,
                               from_image, embedding, keywords, keyword_count)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s::tsvector, %s) RETURNING id""",
                        rows,
                        returning=True,
                    )
                    while True:
                        ids.append(int(cursor.fetchone()[0]))
                        if not cursor.nextset():
                            break
            write_postings(db, collection, document_id, ids, tokens)
        return removed, ids

    def delete_document(self, collection: str, name: str) -> list[int]:
        with self._db.transaction() as db:
            self._lock_collection(db, collection)
            removed = self._delete(db, collection, name)
            if removed is None:
                return []
            self._bump(db, collection)
            return removed

    def generation(self, collection: str) -> int:
        row = self._one("SELECT generation FROM generations WHERE collection = %s", (collection,))
        return int(row[0]) if row else 0

    # --- chunks and pages -------------------------------------------------------------------

    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        rows = self._all(
            """SELECT c.id, d.name, c.page, c.text FROM chunks c
               JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(%s)""",
            (list(ids),),
        )
        return {int(r[0]): StoredChunk(int(r[0]), r[1], int(r[2]), r[3]) for r in rows}

    def vectors(self, ids: Sequence[int], dimension: int) -> dict[int, Vectors]:
        if not ids:
            return {}
        rows = self._all("SELECT id, embedding FROM chunks WHERE id = ANY(%s)", (list(ids),))
        return {int(r[0]): _array(r[1])[:dimension] for r in rows}

    def page_text(self, collection: str, name: str, page: int) -> str | None:
        row = self._one(
            """SELECT p.text FROM pages p JOIN documents d ON d.id = p.document_id
               WHERE d.collection = %s AND d.name = %s AND p.page = %s""",
            (collection, name, page),
        )
        return row[0] if row else None

    def quote_from_image(self, collection: str, name: str, page: int, quote: str) -> bool:
        row = self._one(
            """SELECT p.scanned, p.image_text FROM pages p
               JOIN documents d ON d.id = p.document_id
               WHERE d.collection = %s AND d.name = %s AND p.page = %s""",
            (collection, name, page),
        )
        if row is None or not row[1]:
            return False
        if row[0]:
            return True
        wanted = _for_match(quote)
        return bool(wanted) and wanted in _for_match(row[1])

    def chunk_ids(self, collection: str) -> list[int]:
        rows = self._all("SELECT id FROM chunks WHERE collection = %s ORDER BY id", (collection,))
        return [int(r[0]) for r in rows]

    def chunk_texts(self, ids: Sequence[int]) -> list[str]:
        found = {i: c.text for i, c in self.chunks(ids).items()}
        return [found[i] for i in ids]

    def raw_vectors(self, ids: Sequence[int]) -> dict[int, bytes]:
        if not ids:
            return {}
        rows = self._all("SELECT id, embedding FROM chunks WHERE id = ANY(%s)", (list(ids),))
        return {int(r[0]): _array(r[1]).tobytes() for r in rows}

    def update_vectors(self, ids: Sequence[int], vectors: Vectors) -> None:
        with self._db.transaction() as db, db.cursor() as cursor:
            cursor.executemany(
                "UPDATE chunks SET embedding = %s WHERE id = %s",
                [(np.asarray(v, dtype=np.float32), i)
                 for i, v in zip(ids, vectors, strict=True)],
            )

    def iter_vectors(
        self, collection: str, dimension: int, batch: int = 4096
    ) -> Iterator[tuple[list[int], Vectors]]:
        last = 0
        while True:
            rows = self._all(
                """SELECT id, embedding FROM chunks WHERE collection = %s AND id > %s
                   ORDER BY id LIMIT %s""",
                (collection, last, batch),
            )
            if not rows:
                return
            ids = [int(r[0]) for r in rows]
            yield ids, np.stack([_array(r[1])[:dimension] for r in rows])
            last = ids[-1]

    def embedder_identity(self, collection: str) -> str | None:
        row = self._one(
            "SELECT identity FROM collection_embedders WHERE collection = %s", (collection,)
        )
        return str(row[0]) if row else None

    def set_embedder_identity(self, collection: str, identity: str) -> None:
        with self._db.transaction() as db:
            db.execute(
                """INSERT INTO collection_embedders (collection, identity) VALUES (%s, %s)
                   ON CONFLICT (collection) DO UPDATE SET identity = excluded.identity""",
                (collection, identity),
            )

    # --- keywords ---------------------------------------------------------------------------

    def _phrases(self, text: str) -> list[list[str]]:
        """The question's terms as FTS5 phrases (a term may make several tokens: "covid-19");
        the embedded store quotes each term the same way (rag.store.keyword_query)."""
        return [p for p in self._terms.tokens(question_terms(text)[:32]) if p]

    def term_in_collection(
        self,
        collection: str,
        term: str,
        documents: Sequence[str] | None = None,
        *,
        prefix: bool = False,
    ) -> bool:
        """Whether any chunk of the collection (or of the named documents) has the term; with
        `prefix`, any word that starts with it."""
        phrases = self._phrases(term)
        if not phrases:
            return True
        names = list(dict.fromkeys(documents or ()))
        only = " AND d.name = ANY(%s)" if names else ""
        row = self._one(
            f"""SELECT 1 FROM chunks c JOIN documents d ON d.id = c.document_id
                WHERE c.collection = %s AND c.keywords @@ %s::tsquery{only} LIMIT 1""",
            [collection, any_query(phrases, prefix=prefix), *([names] if names else [])],
        )
        return row is not None

    def keyword_search(self, collection: str, question: str, limit: int) -> list[int]:
        """Chunk ids ranked as FTS5's bm25() ranks them (k1 = 1.2, b = 0.75, its idf, each
        query phrase counted once per time it is asked), within one collection, from the
        posting lists: only the matching postings are read, never a chunk's whole term list.
        Phrases of several terms ("covid-19") are counted from the matching chunks' positions.
        Ties, and sums that differ in the last bits, go by chunk id."""
        phrases = self._phrases(question)
        if not phrases:
            return []
        single: dict[str, int] = {}
        for phrase in phrases:
            if len(phrase) == 1:
                single[phrase[0]] = single.get(phrase[0], 0) + 1
        several = [p for p in phrases if len(p) > 1]
        with self._db.transaction() as db:
            totals = db.execute(
                "SELECT chunks, words FROM keyword_totals WHERE collection = %s AND chunks > 0",
                (collection,),
            ).fetchone()
            if totals is None:
                return []
            chunks, avgdl = float(totals[0]), float(totals[1]) / float(totals[0])
            # a common word's postings can name most chunks: group them in memory, not on disk
            db.execute("SET LOCAL work_mem = '64MB'")
            extra_ids, extra_scores = self._phrase_scores(db, collection, several, chunks, avgdl)
            rows = db.execute(
                """WITH wanted AS (
                       SELECT * FROM unnest(%(terms)s::text[], %(times)s::float8[]) AS w(term, times)),
                   postings AS MATERIALIZED (
                       SELECT p.term, u.id, u.tf, u.len
                       FROM keyword_postings p JOIN wanted w USING (term),
                            unnest(p.chunks, p.counts, p.lengths) AS u(id, tf, len)
                       WHERE p.collection = %(collection)s),
                   weights AS (
                       SELECT w.term, w.times * CASE WHEN f.idf > 0 THEN f.idf ELSE 1e-6 END
                              AS weight
                       FROM wanted w JOIN (
                           SELECT term, ln((%(n)s::float8 - count(*)::float8 + 0.5)
                                           / (count(*)::float8 + 0.5)) AS idf
                           FROM postings GROUP BY term) f USING (term)),
                   scores AS (
                       SELECT p.id, wt.weight * (p.tf * 2.2::float8)
                                    / (p.tf + 1.2::float8 * (0.25::float8
                                       + 0.75::float8 * p.len / %(avgdl)s::float8)) AS s
                       FROM postings p JOIN weights wt USING (term)
                       UNION ALL
                       SELECT * FROM unnest(%(extra_ids)s::bigint[], %(extra_scores)s::float8[]))
                   SELECT id FROM scores GROUP BY id
                   ORDER BY round(sum(s) * 1e9::float8) DESC, id LIMIT %(limit)s""",
                {"terms": list(single), "times": [float(n) for n in single.values()],
                 "collection": collection, "n": chunks, "avgdl": avgdl,
                 "extra_ids": extra_ids, "extra_scores": extra_scores, "limit": limit},
            ).fetchall()
        return [int(r[0]) for r in rows]

    @staticmethod
    def _phrase_scores(
        db: Any, collection: str, phrases: Sequence[Sequence[str]], chunks: float, avgdl: float
    ) -> tuple[list[int], list[float]]:
        """BM25's part from the phrases of several terms, per chunk that has any of them."""
        if not phrases:
            return [], []
        wanted = sorted({t for p in phrases for t in p})
        rows = db.execute(
            """SELECT c.id, c.keyword_count, u.lexeme, u.positions
               FROM chunks c, unnest(c.keywords) u
               WHERE c.collection = %s AND c.keywords @@ %s::tsquery AND u.lexeme = ANY(%s)""",
            (collection, any_query(phrases), wanted),
        ).fetchall()
        found: dict[int, tuple[int, dict[str, set[int]]]] = {}
        for chunk_id, length, lexeme, positions in rows:
            found.setdefault(int(chunk_id), (int(length), {}))[1][lexeme] = set(positions)
        counts = [{i: phrase_count(p, places) for i, (_, places) in found.items()}
                  for p in phrases]
        scores: dict[int, float] = {}
        for phrase_counts in counts:
            hits = sum(1 for n in phrase_counts.values() if n)
            idf = math.log((chunks - hits + 0.5) / (hits + 0.5))
            idf = idf if idf > 0 else 1e-6
            for chunk_id, n in phrase_counts.items():
                if n:
                    length = found[chunk_id][0]
                    scores[chunk_id] = scores.get(chunk_id, 0.0) + idf * n * 2.2 / (
                        n + 1.2 * (0.25 + 0.75 * length / avgdl))
        return list(scores), list(scores.values())
