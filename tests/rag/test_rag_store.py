"""The document store without models, on SQLite and on Postgres (a real server on loopback):
keyword queries, FTS5 safety, scoping, deletes, generations, migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.chunk import chunk_document
from rag.parse import PageText, ParsedDocument
from rag.storage import Store
from rag.store import DocumentStore, keyword_query

DIMENSION = 4
MIGRATIONS = [
    "m001_text_from_images",
    "m002_generations",
    "m003_collection_embedders",
    "m004_keyword_index_per_collection",
]


def put(store: Store, collection: str, name: str, pages: list[str], sha: str = "") -> None:
    parsed = ParsedDocument(
        title="", pages=[PageText(i + 1, t, has_text=True) for i, t in enumerate(pages)]
    )
    chunks = chunk_document(parsed.pages, 110, 0)
    vectors = np.full((len(chunks), DIMENSION), 0.5, dtype=np.float32)
    store.put_document(
        collection, name, sha or f"sha-{name}-{hash(tuple(pages))}", parsed, chunks, vectors
    )


def texts(store: Store, ids: list[int]) -> list[str]:
    found = store.chunks(ids)
    return [found[i].text for i in ids]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens the test's database (again: another process's, or another node's, view). Every
    test of the store contract runs on both back ends."""
    opened: list[Store] = []

    def sqlite() -> Store:
        return DocumentStore(tmp_path / "documents.sqlite")

    def make() -> Store:
        opened.append(factory())
        return opened[-1]

    if request.param == "postgres":
        from rag.postgres import PostgresDatabase, PostgresOptions
        from rag.postgres_store import PostgresStore

        url = request.getfixturevalue("postgres_url")

        def factory() -> Store:
            return PostgresStore(PostgresDatabase(PostgresOptions(url=url, pool_size=2)))
    else:
        factory = sqlite
    yield make
    for each in opened:
        each.close()


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()


@pytest.fixture
def fts_store(store: Store) -> Store:
    put(store, "c", "notes.pdf", ["Alpha near beta. The OR gate and the NOT gate. Cost: 5%."])
    return store


def test_keyword_query_quotes_terms_and_drops_stopwords() -> None:
    assert keyword_query("What is the boiling point of tungsten?") == (
        '"boiling" OR "point" OR "tungsten"'
    )


def test_keyword_query_keeps_numbers_percent_and_hyphenated_terms() -> None:
    assert (
        keyword_query("COVID-19 rose 3.5% in 2020.") == '"covid-19" OR "rose" OR "3.5%" OR "2020"'
    )


def test_keyword_query_deduplicates_and_caps_terms() -> None:
    assert keyword_query("ferry Ferry FERRY ferry") == '"ferry"'
    many = " ".join(f"term{i}" for i in range(50))
    assert keyword_query(many).count(" OR ") == 31


def test_keyword_query_of_only_stopwords_is_empty() -> None:
    assert keyword_query("what is it that they said about the document?") == ""
    # a word for one kind of document is a topic word, as in "paper jam" or "paper size"
    assert keyword_query("what does the paper propose?") == '"paper" OR "propose"'
    assert keyword_query("") == ""
    assert keyword_query('"*" ( ) - : ^ +') == ""


@pytest.mark.parametrize(
    "question",
    [
        '"unbalanced quote',
        'alpha" OR "beta',
        "alph*",
        "*",
        "NEAR(alpha beta, 2)",
        "alpha OR beta",
        "alpha AND NOT beta",
        "text: alpha",
        "{text}: alpha",
        "^alpha",
        "alpha + beta",
        "(alpha",
        "alpha)",
        "-- DROP TABLE chunks; --",
        "'; DELETE FROM documents; --",
        "\x00alpha",
    ],
)
def test_fts5_syntax_in_a_question_is_searched_as_words(
    fts_store: Store, question: str
) -> None:
    ids = fts_store.keyword_search("c", question, 10)
    assert all(isinstance(i, int) for i in ids)
    assert len(fts_store.documents("c")) == 1


def test_operators_are_words_not_syntax(fts_store: Store) -> None:
    # "near" and "not" are matched as plain words of the text.
    assert fts_store.keyword_search("c", "NEAR", 10)
    assert fts_store.keyword_search("c", "NOT", 10)
    assert keyword_query("zebra NEAR(quagga, 3)") == '"zebra" OR "near" OR "quagga"'
    assert fts_store.keyword_search("c", "zebra quagga", 10) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_no_question_breaks_the_keyword_search(question: str) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5 (text, tokenize = 'porter unicode61')")
    db.execute("INSERT INTO f (rowid, text) VALUES (1, 'some words here')")
    query = keyword_query(question)
    if query:
        db.execute("SELECT rowid FROM f WHERE f MATCH ?", (query,)).fetchall()


def test_keyword_search_ranks_and_is_scoped_to_the_collection(store: Store) -> None:
    put(store, "a", "ferries.pdf", ["The Marrow Island ferry departs from Pier 7 every hour."])
    put(store, "a", "cats.pdf", ["Cats sleep most of the day and the ferry is irrelevant."])
    put(store, "b", "secret.pdf", ["The Marrow Island ferry secret code is 4471."])
    ids = store.keyword_search("a", "Marrow Island ferry pier", 10)
    assert len(ids) == 2
    assert "Pier 7" in texts(store, ids)[0]
    assert all("4471" not in t for t in texts(store, ids))
    assert store.keyword_search("b", "cats sleep", 10) == []


def test_a_rare_word_outweighs_a_common_one_repeated(store: Store) -> None:
    """BM25's idf on both back ends: the chunk with the rare word comes first, not the one that
    repeats the word every chunk has (Postgres's ts_rank alone would rank it first)."""
    put(store, "a", "repeats.pdf", ["Harbour harbour harbour harbour notes for the harbour."])
    put(store, "a", "rare.pdf", ["The harbour has a lighthouse."])
    for number in range(4):
        put(store, "a", f"filler{number}.pdf", [f"The harbour opens at {number} o'clock."])
    ids = store.keyword_search("a", "harbour lighthouse", 10)
    assert "lighthouse" in texts(store, ids)[0]
    store.delete_document("a", "rare.pdf")  # and its statistics go with it
    put(store, "a", "rare.pdf", ["The harbour has a lighthouse."])
    assert "lighthouse" in texts(store, store.keyword_search("a", "harbour lighthouse", 10))[0]


def test_other_collections_do_not_move_a_collections_keyword_ranking(store: Store) -> None:
    """How rare a word is counts within the collection: another guild's documents, full of a
    word this collection rarely uses, leave this collection's order as it was."""
    put(store, "a", "lighthouse.pdf", ["The harbour lighthouse is painted red."])
    put(store, "a", "crane.pdf", ["The crane lifts containers at night."])
    for number in range(3):
        put(store, "a", f"cranes{number}.pdf", [f"Crane number {number} is being repaired."])
    alone = texts(store, store.keyword_search("a", "harbour crane", 10))
    assert "lighthouse" in alone[0]  # "harbour" is the rarer word in this collection
    for number in range(12):
        put(store, "b", f"port{number}.pdf", [f"Harbour notes, part {number}, on the harbour."])
    assert texts(store, store.keyword_search("a", "harbour crane", 10)) == alone


def test_keyword_search_matches_the_file_name(store: Store) -> None:
    put(store, "a", "harbour_timetable-2024.pdf", ["Departures are listed below for each day."])
    assert store.keyword_search("a", "timetable", 10)


def test_replacing_a_document_removes_its_old_text_from_keyword_search(
    store: Store,
) -> None:
    put(store, "a", "guide.pdf", ["The old price was seventeen euros per ticket."])
    put(store, "a", "guide.pdf", ["The new price is fourteen euros per ticket."])
    assert store.keyword_search("a", "seventeen", 10) == []
    assert store.keyword_search("a", "fourteen", 10)
    assert [d.name for d in store.documents("a")] == ["guide.pdf"]


def test_delete_removes_pages_chunks_and_keywords(store: Store) -> None:
    put(store, "a", "guide.pdf", ["The lighthouse keeper lives on the north cape."])
    put(store, "a", "other.pdf", ["Unrelated text about gardening and tomatoes."])
    ids = store.chunk_ids("a")
    removed = store.delete_document("a", "guide.pdf")
    assert removed and set(removed) < set(ids)
    assert store.keyword_search("a", "lighthouse keeper", 10) == []
    assert store.page_text("a", "guide.pdf", 1) is None
    assert store.chunks(removed) == {}
    assert store.delete_document("a", "guide.pdf") == []
    assert [d.name for d in store.documents("a")] == ["other.pdf"]


def test_page_text_and_find_by_sha_are_scoped(store: Store) -> None:
    put(store, "a", "guide.pdf", ["Page one text is here.", "Page two text is here."], sha="s1")
    assert store.page_text("a", "guide.pdf", 2) == "Page two text is here."
    assert store.page_text("b", "guide.pdf", 2) is None
    info = store.find_by_sha("a", "s1")
    assert info is not None and info.name == "guide.pdf" and info.pages == 2
    assert store.find_by_sha("b", "s1") is None


def test_every_document_write_moves_the_collection_generation_and_a_no_op_does_not(
    store: Store, open_store: Callable[[], Store]
) -> None:
    assert store.generation("a") == 0
    put(store, "a", "guide.pdf", ["The ferry leaves at seven."])
    put(store, "a", "guide.pdf", ["The ferry leaves at eight."])  # a replacement: one write
    put(store, "b", "other.pdf", ["Tomatoes need sun."])
    assert (store.generation("a"), store.generation("b")) == (2, 1)
    store.delete_document("a", "guide.pdf")
    assert store.generation("a") == 3
    assert store.delete_document("a", "guide.pdf") == [] and store.generation("a") == 3
    other = open_store()  # another process's view
    assert (other.generation("a"), other.generation("b")) == (3, 1)


_FIRST_RELEASE_SCHEMA = """
CREATE TABLE documents (id INTEGER PRIMARY KEY, collection TEXT NOT NULL, name TEXT NOT NULL,
    sha256 TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', pages INTEGER NOT NULL,
    pages_without_text INTEGER NOT NULL DEFAULT 0, added_at TEXT NOT NULL,
    UNIQUE (collection, name));
CREATE TABLE pages (document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    page INTEGER NOT NULL, text TEXT NOT NULL, has_text INTEGER NOT NULL,
    PRIMARY KEY (document_id, page));
CREATE TABLE chunks (id INTEGER PRIMARY KEY, document_id INTEGER NOT NULL
    REFERENCES documents (id) ON DELETE CASCADE, page INTEGER NOT NULL,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE VIRTUAL TABLE chunks_fts USING fts5 (text, tokenize = 'porter unicode61');
INSERT INTO documents VALUES (1, 'c', 'old.pdf', 'abc', '', 1, 0, '2024-01-01T00:00:00+00:00');
INSERT INTO pages VALUES (1, 1, 'The old page about the harbour.', 1);
"""


def test_a_new_database_records_every_migration_and_has_every_table(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "documents.sqlite")
    try:
        assert store.migrations() == MIGRATIONS
        store.set_embedder_identity("c", "hash/8/fp32")  # m003's table
        assert store.embedder_identity("c") == "hash/8/fp32"
        assert store.generation("c") == 0  # m002's table
    finally:
        store.close()


def test_a_database_that_had_the_unrecorded_tables_gets_them_recorded(tmp_path: Path) -> None:
    """Folio 0.1 created `generations` and `collection_embedders` at every open, unrecorded;
    their migrations find them there and only record themselves, keeping the rows."""
    path = tmp_path / "documents.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(_FIRST_RELEASE_SCHEMA)
        db.executescript(
            "CREATE TABLE generations (collection TEXT PRIMARY KEY, generation INTEGER NOT NULL);"
            "CREATE TABLE collection_embedders (collection TEXT PRIMARY KEY, identity TEXT"
            " NOT NULL);"
            "INSERT INTO generations VALUES ('c', 7);"
            "INSERT INTO collection_embedders VALUES ('c', 'old/384/fp32');"
        )
    store = DocumentStore(path)
    try:
        assert store.migrations() == MIGRATIONS
        assert store.generation("c") == 7
        assert store.embedder_identity("c") == "old/384/fp32"
    finally:
        store.close()


def test_an_existing_database_is_upgraded_once_and_keeps_its_documents(tmp_path: Path) -> None:
    path = tmp_path / "documents.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(_FIRST_RELEASE_SCHEMA)
    store = DocumentStore(path)
    try:
        assert store.migrations() == MIGRATIONS
        [old] = store.documents("c")
        assert (old.name, old.pages, old.pages_from_images) == ("old.pdf", 1, 0)
        assert store.page_text("c", "old.pdf", 1) == "The old page about the harbour."
        assert not store.quote_from_image("c", "old.pdf", 1, "old page")
    finally:
        store.close()
    again = DocumentStore(path)  # opening again applies nothing twice
    try:
        assert again.migrations() == MIGRATIONS
    finally:
        again.close()


def test_the_first_releases_shared_keyword_table_is_split_by_collection(tmp_path: Path) -> None:
    """The first release kept every collection's keywords in one `chunks_fts`; upgrading moves
    each chunk's into its collection's own index and drops the shared table."""
    path = tmp_path / "documents.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(_FIRST_RELEASE_SCHEMA)
        db.executescript(
            "INSERT INTO documents VALUES (2, 'd', 'other.pdf', 'def', '', 1, 0,"
            " '2024-01-01T00:00:00+00:00');"
            "INSERT INTO chunks VALUES (10, 1, 1, 0, 'The old page about the harbour.', x'00');"
            "INSERT INTO chunks VALUES (11, 2, 1, 0, 'A harbour crane in the other one.', x'00');"
            "INSERT INTO chunks_fts (rowid, text) VALUES (10, 'old The old page about the harbour.');"
            "INSERT INTO chunks_fts (rowid, text) VALUES (11, 'other A harbour crane in the other one.');"
        )
    store = DocumentStore(path)
    try:
        assert store.keyword_search("c", "harbour", 10) == [10]
        assert store.keyword_search("d", "harbour crane", 10) == [11]
        assert store.term_in_collection("d", "crane") and not store.term_in_collection("c", "crane")
        store.delete_document("d", "other.pdf")
        assert store.keyword_search("d", "harbour", 10) == []
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "chunks_fts" not in tables


def test_text_read_from_images_is_stored_as_such(store: Store) -> None:
    pages = [
        PageText(1, "", has_text=True, image_text="The scanned contract is signed.", scanned=True),
        PageText(2, "Figure 2 shows the crane.", has_text=True, image_text="Crane load 40 t"),
    ]
    parsed = ParsedDocument(title="", pages=pages)
    chunks = chunk_document(parsed.pages, 110, 0)
    assert [(c.page, c.from_image) for c in chunks] == [(1, True), (2, False), (2, True)]
    vectors = np.full((len(chunks), DIMENSION), 0.5, dtype=np.float32)
    store.put_document("c", "scan.pdf", "sha-scan", parsed, chunks, vectors)
    [info] = store.documents("c")
    assert info.pages_from_images == 2
    # Quotes are verified against everything on the page, the text read from images included.
    assert store.page_text("c", "scan.pdf", 2) == "Figure 2 shows the crane.\n\nCrane load 40 t"
    assert store.quote_from_image("c", "scan.pdf", 1, "contract is signed")
    assert store.quote_from_image("c", "scan.pdf", 2, "crane load 40 t")
    assert not store.quote_from_image("c", "scan.pdf", 2, "Figure 2 shows the crane")


def test_diacritics_do_not_matter_to_keyword_search(store: Store) -> None:
    put(store, "a", "survey.pdf", ["Žemgulys et al. recognised referee signals in Kaunas."])
    assert store.keyword_search("a", "Zemgulys referee", 10)
    assert store.term_in_collection("a", "zemgulys")
    assert store.term_in_collection("a", "zemgul", prefix=True)
    assert store.keyword_search("a", "Žemgulys", 10)
