"""Evidence sentences' vectors, remembered: the answer step embeds every sentence of the passages
it draws from (about a hundred per question, nine tenths of an evidence answer's time), and the
same pages come back for question after question about a document.

Vectors depend only on the sentence and the model, so a bounded least-recently-used map keyed
by the text stays right while documents come and go; a new model means a new engine and a new
cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.embed import Embedder, Vectors
from rag.vector_cache import VectorCache


class SentenceVectors:
    """`embed(texts)`: the embedder's document vectors, each text embedded at most once while it
    stays among the `capacity` most recently used."""

    def __init__(self, embedder: Embedder, capacity: int = 10_000) -> None:
        self._embedder = embedder
        self._vectors = VectorCache(capacity)

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def __len__(self) -> int:
        return len(self._vectors)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._embedder.dimension), dtype=np.float32)
        found: dict[str, Vectors] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            vector = self._vectors.get(text)
            if vector is None:
                missing.append(text)
            else:
                found[text] = vector
        if missing:
            for text, vector in zip(missing, self._embedder.embed_documents(missing),
                                    strict=True):
                found[text] = vector
                self._vectors.put(text, vector)
        return np.stack([found[text] for text in texts]).astype(np.float32, copy=False)
