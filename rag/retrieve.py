"""Hybrid retrieval: dense (FAISS or pgvector) + keyword (FTS5 BM25 or Postgres full-text
search), fused with reciprocal rank fusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.embed import Embedder
from rag.storage import Store, VectorIndex
from rag.types import Passage


@dataclass(frozen=True, slots=True)
class RetrievalParams:
    top_k: int
    candidates: int
    rrf_k: int
    dense_weight: float
    keyword_weight: float


def reciprocal_rank_fusion(
    rankings: Sequence[tuple[Sequence[int], float]], k: int
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score(id) = Σ weight / (k + rank). Ties keep first-seen order."""
    scores: dict[int, float] = {}
    for ids, weight in rankings:
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)


class HybridRetriever:
    """Finds the passages of one collection that best match a question."""

    def __init__(
        self,
        store: Store,
        index: VectorIndex,
        embedder: Embedder,
        params: RetrievalParams,
    ) -> None:
        self._store = store
        self._index = index
        self._embedder = embedder
        self._params = params

    def retrieve(self, question: str, collection: str, top_k: int | None = None) -> list[Passage]:
        params = self._params
        k = top_k or params.top_k
        query = self._embedder.embed_query(question)
        dense = self._index.search(collection, query, params.candidates)
        keyword = self._store.keyword_search(collection, question, params.candidates)
        fused = reciprocal_rank_fusion(
            [([i for i, _ in dense], params.dense_weight), (keyword, params.keyword_weight)],
            params.rrf_k,
        )[:k]
        ids = [i for i, _ in fused]
        chunks = self._store.chunks(ids)
        dense_scores = dict(dense)
        missing = [i for i in ids if i not in dense_scores]
        if missing:  # keyword-only hits: score them against the query too, for abstention
            for chunk_id, vector in self._store.vectors(missing, self._embedder.dimension).items():
                dense_scores[chunk_id] = float(np.dot(vector, query))
        keyword_rank = {chunk_id: rank for rank, chunk_id in enumerate(keyword, start=1)}
        passages = []
        for chunk_id, score in fused:
            chunk = chunks.get(chunk_id)
            if chunk is None:  # deleted between the two reads
                continue
            passages.append(
                Passage(
                    chunk_id=chunk_id,
                    document=chunk.document,
                    page=chunk.page,
                    text=chunk.text,
                    score=score,
                    dense_score=dense_scores.get(chunk_id, 0.0),
                    keyword_rank=keyword_rank.get(chunk_id),
                )
            )
        return passages
