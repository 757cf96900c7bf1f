"""Evidence sentences' vectors are remembered between questions, bounded, and identical to
what the embedder gives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.embed import Vectors
from rag.sentence_vectors import SentenceVectors


class CountingEmbedder:
    """A vector per text derived from its characters; records every text it is asked for."""

    dimension = 3
    name = "counting"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.asked.extend(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97, t.count("a")] for t in texts],
                        dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return self.embed_documents([text])[0]


def test_each_sentence_is_embedded_once_and_the_vectors_match_the_embedder() -> None:
    embedder = CountingEmbedder()
    cache = SentenceVectors(embedder)
    first = cache.embed(["alpha beta", "gamma", "alpha beta"])
    second = cache.embed(["gamma", "delta"])
    assert embedder.asked == ["alpha beta", "gamma", "delta"]
    direct = CountingEmbedder()
    np.testing.assert_array_equal(first, direct.embed_documents(["alpha beta", "gamma",
                                                                  "alpha beta"]))
    np.testing.assert_array_equal(second, direct.embed_documents(["gamma", "delta"]))
    assert cache.embed([]).shape == (0, 3)


def test_the_least_recently_used_sentences_are_forgotten_beyond_capacity() -> None:
    embedder = CountingEmbedder()
    cache = SentenceVectors(embedder, capacity=2)
    cache.embed(["one", "two"])
    cache.embed(["one"])  # "two" is now the least recently used
    cache.embed(["three"])
    assert len(cache) == 2
    embedder.asked.clear()
    cache.embed(["one", "two", "three"])
    assert embedder.asked == ["two"]
