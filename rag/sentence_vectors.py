"""Evidence sentences' vectors, remembered: the answer step embeds every sentence of the passages
it draws from (about a hundred per question, nine tenths of an evidence answer's time), and the
same pages come back for question after question about a document.

Vectors depend only on the sentence and the model, so a bounded least-recently-used map keyed
by the text stays right while documents come and go; a new model means a new engine and a new
cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from rag.embed import Embedder, Vectors


class SentenceVectors:
    """`embed(texts)`: the embedder's document vectors, each text embedded at most once while it
    stays among the `capacity` most recently used."""

    def __init__(self, embedder: Embedder, capacity: int = 10_000) -> None:
        self._embedder = embedder
        self._capacity = capacity
        self._vectors: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        fresh = self._embedder.embed_documents(missing) if missing else None
        with self._lock:
            if fresh is not None:
                for text, vector in zip(missing, fresh, strict=True):
                    self._vectors[text] = vector
            rows = []
            for text in texts:
                self._vectors.move_to_end(text)
                rows.append(self._vectors[text])
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)
        if not rows:
            return np.zeros((0, self._embedder.dimension), dtype=np.float32)
        return np.stack(rows).astype(np.float32, copy=False)
