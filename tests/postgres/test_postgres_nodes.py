"""The Postgres back end as several nodes see it, against a real server on loopback: migrations
applied once however many nodes start together, a write on one node seen by the others at once,
replacement without a moment of half a document, collection isolation of vector search, and a
database that goes away (one line, no secret, nothing half-written, back when it is)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pdfs import make_pdf
from postgres_server import PostgresServer
from test_rag_reembed import HashEmbedder

from rag.chunk import chunk_document
from rag.engine import EngineOptions, RagEngine
from rag.errors import DatabaseUnavailable
from rag.originals import OriginalFiles
from rag.parse import PageText, ParsedDocument, ParseLimits
from rag.pgvector_index import PgVectorIndex
from rag.postgres import PostgresDatabase, PostgresOptions
from rag.postgres_originals import SharedOriginals
from rag.postgres_store import PostgresStore
from rag.prompt import PromptLimits
from rag.retrieve import RetrievalParams
from rag.storage import VectorIndex

DIMENSION = 8


@pytest.fixture
def nodes(postgres_url: str) -> Iterator[Callable[..., PostgresStore]]:
    """`node(**options)`: another node's store on the test's database."""
    opened: list[PostgresStore] = []

    def node(**options: Any) -> PostgresStore:
        opened.append(PostgresStore(PostgresDatabase(
            PostgresOptions(url=options.pop("url", postgres_url), pool_size=2, **options)
        )))
        return opened[-1]

    yield node
    for store in opened:
        store.close()


def document(*pages: str) -> ParsedDocument:
    return ParsedDocument(
        title="", pages=[PageText(i + 1, t, has_text=True) for i, t in enumerate(pages)]
    )


def put(store: PostgresStore, collection: str, name: str, parsed: ParsedDocument,
        embedder: HashEmbedder) -> list[int]:
    chunks = chunk_document(parsed.pages, 40, 0)
    vectors = embedder.embed_documents([c.text for c in chunks])
    return store.put_document(collection, name, f"sha-{name}-{id(parsed)}", parsed, chunks,
                              vectors)[1]


def test_nodes_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    errors: list[BaseException] = []
    stores: list[PostgresStore] = []

    def start() -> None:
        try:
            stores.append(PostgresStore(PostgresDatabase(PostgresOptions(url=postgres_url,
                                                                         pool_size=1))))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len(stores) == 6
        expected = ["m001_documents", "m002_history", "m003_originals", "m004_fts5_terms",
                    "m005_vectors_in_row", "m006_history_node"]
        assert all(s.migrations() == expected for s in stores)
        with psycopg.connect(postgres_url) as db:
            assert db.execute("SELECT count(*) FROM schema_migrations").fetchone() == (6,)
    finally:
        for store in stores:
            store.close()


def test_a_document_written_on_one_node_is_found_on_another_and_forgotten_everywhere(
    nodes: Callable[..., PostgresStore],
) -> None:
    one, two = nodes(), nodes()
    embedder = HashEmbedder("e", DIMENSION)
    ids = put(one, "team", "harbour.pdf", document("The harbour tax is seventeen euros."), embedder)
    index = PgVectorIndex(two, DIMENSION)
    query = embedder.embed_query("The harbour tax is seventeen euros.")
    assert [i for i, _ in index.search("team", query, 3)] == ids  # dense, on the other node
    assert two.keyword_search("team", "harbour tax", 5) == ids  # keywords too
    assert [d.name for d in two.documents("team")] == ["harbour.pdf"]
    assert two.generation("team") == one.generation("team") == 1
    two.delete_document("team", "harbour.pdf")
    assert one.documents("team") == []
    assert PgVectorIndex(one, DIMENSION).search("team", query, 3) == []
    assert one.keyword_search("team", "harbour tax", 5) == []


def test_vector_search_never_crosses_collections(nodes: Callable[..., PostgresStore]) -> None:
    store = nodes()
    embedder = HashEmbedder("e", DIMENSION)
    text = "The vault code is 4471."
    secret = put(store, "guild-a", "vault.pdf", document(text), embedder)
    mine = put(store, "guild-b", "menu.pdf", document("Soup of the day is leek."), embedder)
    for mode in ("exact", "hnsw"):
        index: VectorIndex = PgVectorIndex(store, DIMENSION, mode=mode)  # type: ignore[arg-type]
        found = [i for i, _ in index.search("guild-b", embedder.embed_query(text), 10)]
        assert found == mine, mode
        assert [i for i, _ in index.search("guild-a", embedder.embed_query(text), 1)] == secret


def test_exact_and_hnsw_search_agree_on_a_small_collection(
    nodes: Callable[..., PostgresStore],
) -> None:
    store = nodes()
    embedder = HashEmbedder("e", DIMENSION)
    pages = [f"Page {i} is about topic number {i * 7}." for i in range(40)]
    put(store, "c", "many.pdf", document(*pages), embedder)
    exact = PgVectorIndex(store, DIMENSION)
    hnsw = PgVectorIndex(store, DIMENSION, mode="hnsw", ef_search=200)
    for page in pages[:10]:
        query = embedder.embed_query(page)
        top = exact.search("c", query, 5)
        assert [i for i, _ in hnsw.search("c", query, 5)] == [i for i, _ in top]
        assert top[0][1] == pytest.approx(1.0, abs=1e-5)  # its own chunk, cosine 1


def test_a_replacement_is_never_seen_half_done(nodes: Callable[..., PostgresStore]) -> None:
    writer, reader = nodes(), nodes()
    embedder = HashEmbedder("e", DIMENSION)
    versions = [document(*(f"Version {v} says page {p} costs {v * 10 + p} euros." for p in
                           range(1, 6))) for v in range(2)]
    put(writer, "c", "prices.pdf", versions[0], embedder)
    seen: list[tuple[int, str | None]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            docs = reader.documents("c")
            text = reader.page_text("c", "prices.pdf", 3)
            seen.append((len(docs), text))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for round_ in range(12):
            put(writer, "c", "prices.pdf", versions[(round_ + 1) % 2], embedder)
    finally:
        done.set()
        thread.join()
    assert seen, "the reader never ran"
    assert all(count == 1 for count, _ in seen)  # never zero documents, never two
    assert {text for _, text in seen} <= {p.pages[2].text for p in versions}  # never None


class _DiesMidway:
    """Vectors whose iteration kills the database after the first chunk was written."""

    def __init__(self, vectors: np.ndarray, server: PostgresServer) -> None:
        self._vectors, self._server = vectors, server

    def __iter__(self) -> Iterator[np.ndarray]:
        for number, row in enumerate(self._vectors):
            if number == 1:
                self._server.kill()
            yield row


def test_a_database_that_dies_mid_write_leaves_the_old_version_whole(
    postgres_server: PostgresServer, nodes: Callable[..., PostgresStore], postgres_url: str
) -> None:
    # A password in the URL must never reach a message (trust auth ignores it).
    url = postgres_url.replace("postgres@", "postgres:sekret-pw@")
    store = nodes(url=url, pool_timeout_s=1.0, connect_timeout_s=1.0)
    embedder = HashEmbedder("e", DIMENSION)
    old = document("The old tariff is nine euros.", "Second page of the old tariff.")
    put(store, "c", "tariff.pdf", old, embedder)
    new = document("The new tariff is twelve euros.", "Second page.", "Third page.")
    chunks = chunk_document(new.pages, 40, 0)
    vectors = embedder.embed_documents([c.text for c in chunks])
    try:
        with pytest.raises(DatabaseUnavailable) as failure:
            store.put_document("c", "tariff.pdf", "sha-new", new, chunks,
                               _DiesMidway(vectors, postgres_server))  # type: ignore[arg-type]
        message = failure.value.message
        assert "\n" not in message and "sekret" not in message
        assert f"127.0.0.1:{postgres_server.port}" in message
        with pytest.raises(DatabaseUnavailable):  # while it is away, every call says so
            store.documents("c")
    finally:
        postgres_server.start()
    # Back: the same pool serves again (its reconnection backs off, as the worker's retries
    # do), and the old version is there, whole.
    deadline = time.monotonic() + 60
    while True:
        try:
            [info] = store.documents("c")
            break
        except DatabaseUnavailable:
            assert time.monotonic() < deadline, "the pool never reconnected"
            time.sleep(0.5)
    assert (info.pages, info.chunks) == (2, 2)
    assert store.page_text("c", "tariff.pdf", 1) == "The old tariff is nine euros."
    assert store.page_text("c", "tariff.pdf", 3) is None


def options() -> EngineOptions:
    return EngineOptions(
        chunk_words=60, chunk_overlap=0,
        retrieval=RetrievalParams(top_k=3, candidates=10, rrf_k=60, dense_weight=1.0,
                                  keyword_weight=1.0),
        min_dense_score=0.35,
        prompt=PromptLimits(max_passages=3, passage_tokens=600, answer_tokens=64),
        parse=ParseLimits(max_bytes=10_000_000, max_pages=10, timeout_s=30.0, memory_mb=1024),
    )


def engine_on(
    store: PostgresStore, embedder: HashEmbedder, originals: SharedOriginals | None = None
) -> RagEngine:
    def no_model() -> Any:
        raise AssertionError("retrieval needs no generation model")

    def index(dimension: int) -> VectorIndex:
        return PgVectorIndex(store, dimension)

    return RagEngine(store, lambda: embedder, no_model, index, options(),  # type: ignore[arg-type]
                     originals)


def test_a_pdf_ingested_on_one_node_opens_on_another_until_it_is_forgotten(
    nodes: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    embedder = HashEmbedder("e", DIMENSION)
    first, second = nodes(), nodes()
    one = engine_on(first, embedder, SharedOriginals(first.database, OriginalFiles(tmp_path / "a")))
    two = engine_on(second, embedder,
                    SharedOriginals(second.database, OriginalFiles(tmp_path / "b")))
    pdf = make_pdf(["Overview of the port.", "The pilot boat leaves at dawn from quay nine."])
    one.ingest_bytes("port.pdf", pdf, collection="harbour")
    opened = two.original_file("port.pdf", collection="harbour")
    assert opened is not None and opened.read_bytes() == pdf
    assert tmp_path / "b" in opened.parents  # read from the database into node two's folder
    assert two.original_file("port.pdf", collection="elsewhere") is None
    one.forget("port.pdf", collection="harbour")
    assert two.original_file("port.pdf", collection="harbour") is None
    sha = hashlib.sha256(pdf).hexdigest()
    fresh = SharedOriginals(second.database, OriginalFiles(tmp_path / "c"))
    assert fresh.find("harbour", sha) is None  # gone from the database, not only from a cache


def test_two_engines_on_one_database_share_ingest_replace_and_forget(
    nodes: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    embedder = HashEmbedder("e", DIMENSION)
    one, two = engine_on(nodes(), embedder), engine_on(nodes(), embedder)
    pdf = make_pdf(["Overview of the port.", "The pilot boat leaves at dawn from quay nine."])
    [outcome] = one.ingest_bytes("port.pdf", pdf, collection="harbour").outcomes
    assert outcome.status == "added"
    found = two.retrieve("When does the pilot boat leave quay nine?", collection="harbour")
    assert ("port.pdf", 2) in {(p.document, p.page) for p in found}
    changed = make_pdf(["Overview of the port.", "The pilot boat now leaves at noon."])
    [outcome] = two.ingest_bytes("port.pdf", changed, collection="harbour").outcomes
    assert outcome.status == "replaced"
    texts = " ".join(p.text for p in one.retrieve("pilot boat", collection="harbour"))
    assert "noon" in texts and "dawn" not in texts
    assert two.retrieve("pilot boat", collection="elsewhere") == []
    one.forget("port.pdf", collection="harbour")
    assert two.documents("harbour") == []
    assert two.retrieve("pilot boat", collection="harbour") == []


def test_keyword_statistics_follow_every_write(
    nodes: Callable[..., PostgresStore], postgres_url: str
) -> None:
    """BM25's posting lists and totals (kept beside the chunks) equal a recount of the chunks'
    terms after adds, replaces, deletes."""
    store = nodes()
    embedder = HashEmbedder("e", DIMENSION)
    put(store, "a", "one.pdf", document("Ferries leave hourly.", "Ferries are late."), embedder)
    put(store, "a", "two.pdf", document("Trains leave hourly too."), embedder)
    put(store, "b", "one.pdf", document("Other collection, other ferries."), embedder)
    put(store, "a", "one.pdf", document("Buses replace the ferries."), embedder)
    store.delete_document("a", "two.pdf")
    with psycopg.connect(postgres_url) as db:
        kept = set(db.execute(
            """SELECT p.collection, p.term, x.id, x.tf, x.length FROM keyword_postings p,
                   unnest(p.chunks, p.counts, p.lengths) AS x(id, tf, length)""").fetchall())
        recount = set(db.execute(
            """SELECT c.collection, u.lexeme, c.id, array_length(u.positions, 1), c.keyword_count
               FROM chunks c, unnest(c.keywords) u""").fetchall())
        totals = set(db.execute("SELECT collection, chunks, words FROM keyword_totals"
                                " WHERE chunks > 0").fetchall())
        actual = set(db.execute(
            """SELECT collection, count(*), sum(keyword_count) FROM chunks
               GROUP BY collection""").fetchall())
    assert kept == recount
    terms = {(collection, term) for collection, term, *_ in kept}
    assert ("a", "train") not in terms and ("a", "buse") in terms  # FTS5's Porter stems
    assert ("a", "on") in terms  # the file name "one" (Porter: "on"), as FTS5 indexes it
    assert totals == actual
