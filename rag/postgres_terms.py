"""The keyword terms of the Postgres store, made by SQLite's own FTS5 tokenizer, so that keyword
search on Postgres ranks exactly as on the embedded store.

Why SQLite: the embedded store's index is FTS5 with `porter unicode61 remove_diacritics 2`
(rag/store.py). Postgres's parsers and its Snowball stemmer make other terms (a hyphenated word
whole and in parts, "ran" against "run", other vowel rules), which moved retrieval by 0.04 hit@5
on a dev set. Running the very same tokenizer (an in-memory FTS5 table read back through
`fts5vocab`) gives the same terms by construction: which characters split words, case folding,
diacritics, the original Porter stemmer, all as FTS5 does them, with nothing to install.

The terms are stored as a tsvector literal (positions kept, for phrases and prefixes; no
Postgres text-search configuration touches them) and as per-document posting lists
(`keyword_postings`: chunk ids, term counts and chunk lengths), from which BM25 is computed
without reading each matching chunk's vector.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from config.errors import ConfigError
from rag.store import FTS5_TOKENIZE, _label  # the embedded store's tokenizer and chunk labels

# tsvector limits: a lexeme under 2 KiB (longer tokens are cut, on both sides alike), positions
# 1..16383 (later ones count as 16383; only phrase matching reads positions).
_MAX_TERM_BYTES = 1000
_MAX_POSITION = 16383


def _cut(term: str) -> str:
    data = term.encode("utf-8")
    if len(data) <= _MAX_TERM_BYTES:
        return term
    return data[:_MAX_TERM_BYTES].decode("utf-8", "ignore")


class Fts5Terms:
    """Tokenizes texts as the embedded store's FTS5 index does (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            self._db.execute(
                "CREATE VIRTUAL TABLE t USING fts5 "
                f"(text, content = '', tokenize = '{FTS5_TOKENIZE}')"
            )
            self._db.execute("CREATE VIRTUAL TABLE v USING fts5vocab (t, 'instance')")
        except sqlite3.OperationalError as exc:
            self._db.close()
            raise ConfigError(
                "the Postgres store makes its keywords with SQLite's FTS5, and this Python's "
                f"sqlite3 has no FTS5 ({exc}): use a Python built with it"
            ) from None

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text's terms, in order (a term as often as it occurs)."""
        if not texts:
            return []
        found: list[list[str]] = [[] for _ in texts]
        with self._lock:
            self._db.executemany(
                "INSERT INTO t (rowid, text) VALUES (?, ?)",
                [(number, text) for number, text in enumerate(texts, start=1)],
            )
            try:
                rows = self._db.execute("SELECT term, doc FROM v ORDER BY doc, offset").fetchall()
            finally:
                self._db.execute("INSERT INTO t (t) VALUES ('delete-all')")
        for term, doc in rows:
            found[int(doc) - 1].append(_cut(str(term)))
        return found

    def close(self) -> None:
        self._db.close()


def _quote(term: str) -> str:
    """A lexeme in a tsvector or tsquery literal (FTS5 terms have no quotes or backslashes,
    but nothing here relies on it)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(tokens: Sequence[str]) -> str:
    """The tsvector of a chunk's terms with their (1-based) positions."""
    positions: dict[str, list[int]] = {}
    for number, token in enumerate(tokens, start=1):
        positions.setdefault(token, []).append(min(number, _MAX_POSITION))
    return " ".join(
        f"{_quote(term)}:{','.join(map(str, places))}" for term, places in positions.items()
    )


def phrase_query(phrase: Sequence[str], *, prefix: bool = False) -> str:
    """A tsquery literal matching the terms next to each other (as an FTS5 phrase); with
    `prefix`, the last term as a prefix (FTS5's `"..."*`)."""
    parts = [_quote(t) for t in phrase]
    if prefix:
        parts[-1] += ":*"
    return "(" + " <-> ".join(parts) + ")"


def any_query(phrases: Sequence[Sequence[str]], *, prefix: bool = False) -> str:
    return " | ".join(phrase_query(p, prefix=prefix) for p in phrases)


def phrase_count(phrase: Sequence[str], positions: dict[str, set[int]]) -> int:
    """How often the phrase occurs in a chunk, given its terms' positions (FTS5's count of
    phrase instances, the `f(q, D)` of its BM25)."""
    places = [positions.get(term, set()) for term in phrase]
    return sum(all(start + i in places[i] for i in range(1, len(phrase))) for start in places[0])


def postings(
    chunk_ids: Sequence[int], tokens: Sequence[Sequence[str]]
) -> list[tuple[str, list[int], list[int], list[int]]]:
    """A document's posting lists: per term, the chunks that have it, how often, and each
    chunk's length in terms (BM25's D)."""
    lists: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for chunk_id, chunk_tokens in zip(chunk_ids, tokens, strict=True):
        counts: dict[str, int] = {}
        for token in chunk_tokens:
            counts[token] = counts.get(token, 0) + 1
        for term, count in counts.items():
            ids, tfs, lengths = lists.setdefault(term, ([], [], []))
            ids.append(chunk_id)
            tfs.append(count)
            lengths.append(len(chunk_tokens))
    return [(term, ids, tfs, lengths) for term, (ids, tfs, lengths) in lists.items()]


def _join(numbers: Sequence[int]) -> str:
    return ",".join(map(str, numbers))


def _copy_text(value: str) -> str:
    """A value in COPY's text format: backslash, tab and line ends escaped."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def write_postings(
    db: Any, collection: str, document_id: int, ids: Sequence[int],
    tokens: Sequence[Sequence[str]],
) -> None:
    """A new document's posting lists, and its chunks in BM25's totals (its chunks already hold
    their terms and lengths)."""
    # Thousands of rows a document: one COPY, its text made here (psycopg's per-value
    # adaptation of the arrays took most of an ingest's database time).
    head = f"{int(document_id)}\t{_copy_text(collection)}\t"
    lines = [
        f"{head}{_copy_text(term)}\t{{{_join(a)}}}\t{{{_join(b)}}}\t{{{_join(c)}}}\n"
        for term, a, b, c in postings(ids, tokens)
    ]
    with db.cursor() as cursor, cursor.copy(
        "COPY keyword_postings (document_id, collection, term, chunks, counts, lengths)"
        " FROM STDIN"
    ) as copy:
        copy.write("".join(lines))
    count_totals(db, collection, document_id, +1)


def count_totals(db: Any, collection: str, document_id: int, sign: int) -> None:
    """Add (+1) or take away (-1) a document's chunks in BM25's totals (chunks, terms)."""
    db.execute(
        """INSERT INTO keyword_totals AS t (collection, chunks, words)
           SELECT %s, %s * count(*), %s * coalesce(sum(keyword_count), 0) FROM chunks
           WHERE document_id = %s
           ON CONFLICT (collection) DO UPDATE SET chunks = t.chunks + excluded.chunks,
               words = t.words + excluded.words""",
        (collection, sign, sign, document_id),
    )


def rebuild_terms(db: Any) -> None:
    """Migration m004: every stored chunk's terms again, with the FTS5 tokenizer (they were
    made by Postgres's English parser and Snowball stemmer), document by document."""

    db.execute("DELETE FROM keyword_totals")
    terms = Fts5Terms()
    try:
        documents = db.execute("SELECT id, collection, name, title FROM documents").fetchall()
        for document_id, collection, name, title in documents:
            chunks = db.execute(
                "SELECT id, text FROM chunks WHERE document_id = %s ORDER BY id", (document_id,)
            ).fetchall()
            ids = [int(r[0]) for r in chunks]
            label = _label(name, title)
            tokens = terms.tokens([f"{label} {r[1]}" for r in chunks])
            with db.cursor() as cursor:
                cursor.executemany(
                    "UPDATE chunks SET keywords = %s::tsvector, keyword_count = %s WHERE id = %s",
                    [(tsvector_literal(t), len(t), i) for i, t in zip(ids, tokens, strict=True)],
                )
            write_postings(db, collection, int(document_id), ids, tokens)
    finally:
        terms.close()
