"""A changed embedder: the collection is re-embedded once from its stored texts (real SQLite and
FAISS), a store from before identities were recorded is adopted when its vectors match, and a
collection whose vectors already match is left alone."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from rag.chunk import chunk_document
from rag.embed import Vectors, identity_of, vector_identity
from rag.index import FaissIndex
from rag.parse import PageText, ParsedDocument
from rag.reembed import reconcile_embedder
from rag.store import DocumentStore

PAGES = [
    "The harbour tax is seventeen euros per night for every visitor.",
    "Ferries leave the north pier every hour from six in the morning.",
    "The museum is closed on Mondays and on the first of January.",
]


class HashEmbedder:
    """Deterministic unit vectors from a hash of (salt, text): two salts are two embedders."""

    def __init__(self, salt: str, dimension: int = 8, precision: str = "fp32") -> None:
        self.salt, self.dimension, self.calls = salt, dimension, 0
        self.name = f"hash-{salt}"
        self.identity = vector_identity(self.name, dimension, precision)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.calls += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(f"{self.salt}|{text}".encode()).digest()[:4])
            row = np.random.default_rng(seed).standard_normal(self.dimension)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dimension)

    def embed_query(self, text: str) -> Vectors:
        return self.embed_documents([text])[0]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DocumentStore]:
    store = DocumentStore(tmp_path / "documents.sqlite")
    yield store
    store.close()


def ingest(store: DocumentStore, index: FaissIndex, embedder: HashEmbedder) -> list[int]:
    parsed = ParsedDocument(
        title="", pages=[PageText(i + 1, t, has_text=True) for i, t in enumerate(PAGES)]
    )
    chunks = chunk_document(parsed.pages, 110, 0)
    vectors = embedder.embed_documents([c.text for c in chunks])
    _, ids = store.put_document("c", "town.pdf", "sha", parsed, chunks, vectors)
    index.add("c", ids, vectors)
    return ids


def test_a_new_embedder_re_embeds_the_collection_once(
    store: DocumentStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = HashEmbedder("old"), HashEmbedder("new", precision="int8")
    index = FaissIndex(tmp_path / "faiss", 8)
    assert reconcile_embedder(store, index, old, "c") == 0  # empty: just recorded
    ids = ingest(store, index, old)
    assert store.embedder_identity("c") == identity_of(old)

    with caplog.at_level(logging.WARNING):
        assert reconcile_embedder(store, index, new, "c") == len(ids)
    assert "re-embedding its 3 chunks" in caplog.text
    assert "hash-old/8/fp32" in caplog.text and "hash-new/8/int8" in caplog.text
    assert store.embedder_identity("c") == identity_of(new)
    # SQLite and FAISS both hold the new embedder's vectors now: a query by the new embedder
    # finds each chunk as its own best match, with cosine 1.
    texts = store.chunk_texts(ids)
    for chunk_id, text in zip(ids, texts, strict=True):
        [(best, score)] = index.search("c", new.embed_query(text), 1)
        assert best == chunk_id and score == pytest.approx(1.0, abs=1e-5)
    stored = store.vectors(ids, 8)
    np.testing.assert_allclose(np.stack([stored[i] for i in ids]), new.embed_documents(texts))
    assert sorted(index.ids("c")) == sorted(ids)

    calls = new.calls
    assert reconcile_embedder(store, index, new, "c") == 0  # recorded: nothing to do
    assert new.calls == calls


def test_a_store_without_an_identity_is_adopted_when_its_vectors_match(
    store: DocumentStore, tmp_path: Path
) -> None:
    embedder = HashEmbedder("same")
    index = FaissIndex(tmp_path / "faiss", 8)
    ingest(store, index, embedder)  # written "before identities were recorded"
    assert store.embedder_identity("c") is None
    before = store.vectors(store.chunk_ids("c"), 8)
    assert reconcile_embedder(store, index, embedder, "c") == 0
    assert store.embedder_identity("c") == identity_of(embedder)
    after = store.vectors(store.chunk_ids("c"), 8)
    for chunk_id, vector in before.items():
        np.testing.assert_array_equal(after[chunk_id], vector)


def test_a_store_without_an_identity_and_other_vectors_is_re_embedded(
    store: DocumentStore, tmp_path: Path
) -> None:
    index = FaissIndex(tmp_path / "faiss", 8)
    ids = ingest(store, index, HashEmbedder("unknown"))
    other = HashEmbedder("other")
    assert reconcile_embedder(store, index, other, "c") == len(ids)
    assert store.embedder_identity("c") == identity_of(other)


def test_another_dimension_is_re_embedded_and_the_index_rebuilt(
    store: DocumentStore, tmp_path: Path
) -> None:
    ids = ingest(store, FaissIndex(tmp_path / "faiss", 8), HashEmbedder("small", dimension=8))
    wide = HashEmbedder("wide", dimension=16)
    index = FaissIndex(tmp_path / "faiss", 16)  # the old 8-wide file is rebuilt empty
    assert reconcile_embedder(store, index, wide, "c") == len(ids)
    assert sorted(index.ids("c")) == sorted(ids)
    text = store.chunk_texts(ids[:1])[0]
    assert index.search("c", wide.embed_query(text), 1)[0][0] == ids[0]


def test_bf16_and_fp32_vectors_of_one_model_need_no_re_embedding(
    store: DocumentStore, tmp_path: Path
) -> None:
    """An index embedded on an AMX machine (bf16) and searched on one without (fp32), or back:
    the vectors agree within cosine 0.9999, so nothing is re-embedded. A store that recorded
    ".../bf16" before the two shared an identity is adopted and its record brought up to date."""
    index = FaissIndex(tmp_path / "faiss", 8)
    bf16 = HashEmbedder("minilm", precision="bf16")
    reconcile_embedder(store, index, bf16, "c")  # empty: records the bf16 embedder
    ingest(store, index, bf16)
    fp32 = HashEmbedder("minilm", precision="fp32")
    assert reconcile_embedder(store, index, fp32, "c") == 0 and fp32.calls == 0

    store.set_embedder_identity("c", "hash-minilm/8/bf16")  # as recorded before
    assert reconcile_embedder(store, index, fp32, "c") == 0 and fp32.calls == 0
    assert store.embedder_identity("c") == identity_of(fp32)
    # int8's vectors are further off: those are still re-embedded.
    assert reconcile_embedder(store, index, HashEmbedder("minilm", precision="int8"), "c") == 3
