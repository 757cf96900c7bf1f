"""Postgres keyword search ranks exactly as the embedded store's FTS5 (real SQLite, a real
PostgreSQL on loopback), on a small corpus made to tell tokenizers and stemmers apart; and a
database whose terms were made by the first schema's English parser is rebuilt by m004 (and its
vectors moved into the rows by m005, unchanged)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from rag.chunk import Chunk
from rag.parse import PageText, ParsedDocument
from rag.postgres import _MIGRATIONS, PostgresDatabase, PostgresOptions
from rag.postgres_store import PostgresStore
from rag.postgres_terms import Fts5Terms
from rag.storage import Store
from rag.store import DocumentStore, keyword_query

DIMENSION = 4

# (file name, title, chunks): hyphenated compounds and their parts apart, diacritics, plurals
# and verb forms Porter and Snowball stem differently ("ran", "generously", "agreed"), digits,
# dotted and percent terms, repeats, case, words only in a file name or a title.
CORPUS: list[tuple[str, str, list[str]]] = [
    ("covid-report.pdf", "Pandemic Report", [
        "COVID-19 cases rose in 2021; covid testing ran daily.",
        "Nineteen tests: covid appeared on day 19, not next to it.",
        "The fine-tuning of models, and fine tuning is two words here.",
    ]),
    ("zemgulys_notes.pdf", "", [
        "Žemgulys wrote the café notes; naïve readers misread them.",
        "Zemgulys and the cafe, again: zemgulys zemgulys.",
        "Running runners run; the runner ran generously and agreed.",
    ]),
    ("budget.pdf", "Budget 2024 v2.5", [
        "Costs grew 3.5% to 12,000 euros (e.g. travel), 50% were agreed.",
        "The budget's e-mail review: e mail, email, emails, mailing.",
        "Policies, policy, policing and the police's policies.",
    ]),
    ("manual.pdf", "Operator Manual", [
        "State-of-the-art operators operate the operational state machine.",
        "Connect the connector; connections connected, connecting.",
        "Universities, universal, university; generalization generalizes.",
        "x86-64 and ARM64: 64-bit registers, 32 bit mode.",
    ]),
    ("boats.pdf", "", [
        "The ferry takes cars across.",
        "Tickets, tickets and more tickets for the night crossing.",
        "A ferry ticket.",
    ]),
]

QUESTIONS = [
    "What about COVID-19 in 2021?",
    "covid 19",
    "How was fine-tuning done?",
    "fine tuning models",
    "Who is Zemgulys?",
    "Žemgulys café naive",
    "When did the runner run?",
    "ran generously agreed",
    "How much did costs grow, 3.5% or 50%?",
    "e.g. travel euros 12,000",
    "email e-mail mailing",
    "policies of the police",
    "state-of-the-art operational operators",
    "connections connecting connector",
    "universities generalization",
    "x86-64 64-bit registers",
    "pandemic report budget manual",
    "operator 2024 v2.5",
    "model models modeling",
    "ferry ferries ticket",  # one term asked twice weighs twice, as in FTS5
    "nothing matches zebra",
]


def put(store: Store, collection: str, name: str, title: str, texts: list[str]) -> None:
    parsed = ParsedDocument(title=title, pages=[PageText(i + 1, t, has_text=True)
                                                for i, t in enumerate(texts)])
    chunks = [Chunk(page=i + 1, ordinal=i, text=t) for i, t in enumerate(texts)]
    vectors = np.full((len(chunks), DIMENSION), 0.5, dtype=np.float32)
    store.put_document(collection, name, f"sha-{name}", parsed, chunks, vectors)


@pytest.fixture
def both(postgres_url: str, tmp_path: Path) -> Iterator[tuple[DocumentStore, PostgresStore]]:
    sqlite_store = DocumentStore(tmp_path / "documents.sqlite")
    postgres = PostgresStore(PostgresDatabase(PostgresOptions(url=postgres_url, pool_size=2)))
    for name, title, texts in CORPUS:
        put(sqlite_store, "c", name, title, texts)
        put(postgres, "c", name, title, texts)
    yield sqlite_store, postgres
    sqlite_store.close()
    postgres.close()


def fts5_ranking(path: Path, question: str) -> list[tuple[str, int]]:
    """FTS5's own bm25() order over the store's file (ties, and sums that differ in the last
    bits, by chunk id, as the Postgres store breaks them)."""
    query = keyword_query(question)
    if not query:
        return []
    with sqlite3.connect(path) as db:
        (number,) = db.execute("SELECT id FROM keyword_indexes WHERE collection = 'c'").fetchone()
        table = f"keywords_{number}"  # collection c's own FTS5 table
        rows = db.execute(
            f"""SELECT d.name, c.page FROM {table} f JOIN chunks c ON c.id = f.rowid
                JOIN documents d ON d.id = c.document_id WHERE {table} MATCH ?
                ORDER BY round(bm25({table}), 9), f.rowid""",
            (query,),
        ).fetchall()
    return [(str(name), int(page)) for name, page in rows]


def ranking(store: Store, question: str) -> list[tuple[str, int]]:
    ids = store.keyword_search("c", question, 100)
    found = store.chunks(ids)
    return [(found[i].document, found[i].page) for i in ids]


def test_terms_are_fts5s_porter_and_unicode61() -> None:
    terms = Fts5Terms()
    try:
        assert terms.tokens(["Žemgulys ran fine-tuning COVID-19 3.5% generously", ""]) == [
            ["zemguli", "ran", "fine", "tune", "covid", "19", "3", "5", "gener"], []]
    finally:
        terms.close()


@pytest.mark.parametrize("question", QUESTIONS)
def test_postgres_ranks_every_question_as_fts5_does(
    both: tuple[DocumentStore, PostgresStore], tmp_path: Path, question: str
) -> None:
    sqlite_store, postgres = both
    expected = fts5_ranking(tmp_path / "documents.sqlite", question)
    assert ranking(postgres, question) == expected
    assert sorted(ranking(sqlite_store, question)) == sorted(expected)


def test_a_hyphenated_term_is_a_phrase_on_both(
    both: tuple[DocumentStore, PostgresStore], tmp_path: Path
) -> None:
    """"COVID-19" finds "covid" next to "19", not a chunk with both words apart."""
    sqlite_store, postgres = both
    top = ranking(postgres, "COVID-19")
    assert top == ranking(sqlite_store, "COVID-19") == [("covid-report.pdf", 1)]


@pytest.mark.parametrize(("term", "prefix"), [
    ("zemgulys", False), ("Žemgulys", False), ("zemg", True), ("zemg", False),
    ("covid-19", False), ("covid-1", True), ("fine-tun", True), ("running", True),
    ("runne", True), ("operat", True), ("x86-64", False), ("zebra", False),
])
def test_term_lookups_agree(
    both: tuple[DocumentStore, PostgresStore], term: str, prefix: bool
) -> None:
    sqlite_store, postgres = both
    for names in (None, ["budget.pdf"], ["zemgulys_notes.pdf", "manual.pdf"]):
        assert postgres.term_in_collection("c", term, names, prefix=prefix) == \
            sqlite_store.term_in_collection("c", term, names, prefix=prefix), (term, names)


def test_an_old_database_gets_fts5_terms_by_migration(postgres_url: str, tmp_path: Path) -> None:
    """A database written before m004 (its terms from the English parser and Snowball) is
    rebuilt once on opening: its ranking is then the fresh one, nothing else changes."""
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("""CREATE TABLE schema_migrations (
            name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
        for name, steps in _MIGRATIONS[:3]:
            for step in steps:
                assert isinstance(step, str)
                db.execute(step)
            db.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        vectors = np.random.default_rng(4).standard_normal((100, DIMENSION)).astype(np.float32)
        written: list[str] = []
        for number, (name, title, texts) in enumerate(CORPUS, start=1):  # as m001..m003 wrote
            db.execute(
                """INSERT INTO documents (id, collection, name, sha256, title, pages, added_at)
                   VALUES (%s, 'c', %s, %s, %s, %s, '2026-01-01')""",
                (number, name, f"sha-{name}", title, len(texts)),
            )
            label = Path(name).stem.replace("-", " ").replace("_", " ") + f" {title}"
            for page, text in enumerate(texts, start=1):
                db.execute(
                    """INSERT INTO chunks (document_id, collection, page, ordinal, text,
                           embedding, keywords)
                       VALUES (%s, 'c', %s, %s, %s, %s::real[]::vector,
                               to_tsvector('folio', %s))""",
                    (number, page, page - 1, text, vectors[len(written)].tolist(),
                     f"{label.strip()} {text}"),
                )
                written.append(text)
        db.execute("SELECT setval('documents_id_seq', 10)")
        db.execute("""INSERT INTO keyword_totals SELECT 'c', count(*), sum(length(keywords))
                      FROM chunks""")
    old = PostgresStore(PostgresDatabase(PostgresOptions(url=postgres_url, pool_size=1)))
    fresh_db = tmp_path / "fresh.sqlite"
    fresh = DocumentStore(fresh_db)
    try:
        assert {"m004_fts5_terms", "m005_vectors_in_row"} <= set(old.migrations())
        ids = old.chunk_ids("c")
        kept = old.vectors(ids, DIMENSION)  # m005 moved them into the rows, bit for bit
        assert [old.chunks([i])[i].text for i in ids] == written
        assert np.array_equal(np.stack([kept[i] for i in ids]), vectors[: len(ids)])
        for name, title, texts in CORPUS:
            put(fresh, "c", name, title, texts)
        for question in QUESTIONS:
            assert ranking(old, question) == fts5_ranking(fresh_db, question), question
        assert len(old.documents("c")) == len(CORPUS)
        put(old, "c", "late.pdf", "", ["A covid-19 page added after the upgrade."])
        assert ranking(old, "covid-19")[0] == ("late.pdf", 1)
    finally:
        old.close()
        fresh.close()
    with psycopg.connect(postgres_url) as db:
        tables = {r[0] for r in db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}
        storage = db.execute("""SELECT attstorage FROM pg_attribute
            WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'""").fetchone()
    assert "keyword_terms" not in tables and "keyword_postings" in tables
    assert storage == ("m",)
