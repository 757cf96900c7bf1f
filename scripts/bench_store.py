#!/usr/bin/env python3
"""Retrieval latency of the storage back ends on a synthetic corpus of N chunks (issue 18).

    .venv/bin/python scripts/bench_store.py --chunks 100000 --backend sqlite
    FOLIO_DATABASE_URL=postgresql://... .venv/bin/python scripts/bench_store.py \\
        --chunks 100000 --backend postgres --vector-search exact

The corpus is generated (Zipf-distributed pseudo-words, random unit vectors of 384 dimensions,
100 chunks per document) into a temporary folder or the given (empty) database, never into the
repository. Each query is a chunk's vector plus noise and a few of its words, through
`HybridRetriever.retrieve` (dense + keyword search, fusion, chunk texts) with the query vector
precomputed, so the figure is the storage's alone (embedding a question adds the same ~10 ms to
every back end). Prints p50 / p95 / mean in milliseconds as one JSON object, and the p50 of the
dense and the keyword search alone (run once more after each query).

`--skip-common N` leaves the N most frequent pseudo-words out of the queries, as a real
question's most common words are function words that `question_terms` drops: with N = 0 (the
first version of this bench) half of a query's five words are among the 100 most frequent and
match 10% to 100% of all chunks each, which no real question does. `--folder DIR` keeps the
SQLite corpus in DIR (and `--reuse` reads it again), as `--reuse` does for a database.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.chunk import Chunk
from rag.embed import Vectors
from rag.parse import PageText, ParsedDocument
from rag.retrieve import HybridRetriever, RetrievalParams
from rag.storage import Store, VectorIndex

DIMENSION = 384
PER_DOCUMENT = 100
WORDS_PER_CHUNK = 120


class FixedQueries:
    """An embedder whose query vectors were computed beforehand (the bench measures storage)."""

    dimension = DIMENSION

    def __init__(self) -> None:
        self.next: Vectors = np.zeros(DIMENSION, dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return self.next

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        raise AssertionError("not used")


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, size=int(rng.integers(4, 10)))) for _ in range(size)]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def open_backend(args: argparse.Namespace, folder: Path) -> tuple[Store, VectorIndex]:
    if args.backend == "postgres":
        import os

        from rag.pgvector_index import PgVectorIndex
        from rag.postgres import PostgresDatabase, PostgresOptions
        from rag.postgres_store import PostgresStore

        store = PostgresStore(PostgresDatabase(PostgresOptions(
            url=os.environ["FOLIO_DATABASE_URL"], statement_timeout_s=600,
        )))
        return store, PgVectorIndex(store, DIMENSION, mode=args.vector_search)
    from rag.index import FaissIndex
    from rag.store import DocumentStore

    return DocumentStore(folder / "documents.sqlite"), FaissIndex(folder / "faiss", DIMENSION)


def load(store: Store, index: VectorIndex, chunks: int, rng: np.random.Generator,
         words: list[str]) -> tuple[np.ndarray, list[str]]:
    """Write the corpus; return some chunk vectors and texts to build queries from."""
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    samples_v, samples_t = [], []
    for number in range(0, chunks, PER_DOCUMENT):
        count = min(PER_DOCUMENT, chunks - number)
        # one draw per document (a draw per chunk spent 8 ms checking `p`: 13 of the
        # 20 minutes the first version took to write 100k chunks)
        drawn = rng.choice(len(words), size=(count, WORDS_PER_CHUNK), p=weights)
        texts = [" ".join(words[i] for i in row) for row in drawn]
        vectors = unit(rng.standard_normal((count, DIMENSION)))
        pages = [PageText(i + 1, t, has_text=True) for i, t in enumerate(texts)]
        parsed = ParsedDocument(title="", pages=pages)
        items = [Chunk(page=i + 1, ordinal=i, text=t) for i, t in enumerate(texts)]
        name = f"doc{number // PER_DOCUMENT:05d}.pdf"
        removed, ids = store.put_document("bench", name, name, parsed, items, vectors)
        index.replace("bench", removed, ids, vectors, generation=store.generation("bench"))
        samples_v.append(vectors[0])
        samples_t.append(texts[0])
        if number and number % 10000 == 0:
            print(f"  {number} chunks written", file=sys.stderr)
    return np.stack(samples_v), samples_t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--vector-search", choices=["exact", "hnsw"], default="exact")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reuse", action="store_true",
                        help="the database (or --folder) already holds the corpus")
    parser.add_argument("--folder", type=Path, default=None,
                        help="sqlite: keep the corpus in this folder, not a temporary one")
    parser.add_argument("--skip-common", type=int, default=0, metavar="N",
                        help="queries leave out the N most frequent words (stop words)")
    args = parser.parse_args()
    rng = np.random.default_rng(18)
    words = vocabulary(20000, rng)
    common = set(words[: args.skip_common])
    with tempfile.TemporaryDirectory(prefix="folio-bench-store-") as temporary:
        folder = Path(temporary) if args.folder is None else args.folder
        folder.mkdir(parents=True, exist_ok=True)
        store, index = open_backend(args, folder)
        started = time.perf_counter()
        if args.reuse:
            ids = store.chunk_ids("bench")
            stored = store.chunks(ids[:: PER_DOCUMENT])
            texts = [stored[i].text for i in ids[:: PER_DOCUMENT]]
            found = store.vectors(ids[:: PER_DOCUMENT], DIMENSION)
            vectors = np.stack([found[i] for i in ids[:: PER_DOCUMENT]])
        else:
            vectors, texts = load(store, index, args.chunks, rng, words)
        load_s = time.perf_counter() - started
        embedder = FixedQueries()
        params = RetrievalParams(top_k=5, candidates=30, rrf_k=60, dense_weight=1.0,
                                 keyword_weight=1.0)
        retriever = HybridRetriever(store, index, embedder, params)  # type: ignore[arg-type]
        timings, hits = [], 0
        parts: dict[str, list[float]] = {"dense": [], "keyword": []}
        for number in range(args.queries + 10):
            which = number % len(texts)
            embedder.next = unit(vectors[which] + 0.05 * rng.standard_normal(DIMENSION))
            content = [w for w in texts[which].split() if w not in common]
            step = max(1, len(content) // 5) if common else 17  # 17: the first version's
            question = " ".join(content[::step][:5])
            begun = time.perf_counter()
            passages = retriever.retrieve(question, "bench")
            elapsed = time.perf_counter() - begun
            begun = time.perf_counter()
            index.search("bench", embedder.next, params.candidates)
            dense = time.perf_counter() - begun
            begun = time.perf_counter()
            store.keyword_search("bench", question, params.candidates)
            keyword = time.perf_counter() - begun
            if number >= 10:  # the first ones warm caches
                timings.append(elapsed * 1000)
                parts["dense"].append(dense * 1000)
                parts["keyword"].append(keyword * 1000)
                hits += any(p.text == texts[which] for p in passages)
        store.close()
    timings.sort()
    print(json.dumps({
        "backend": args.backend,
        "vector_search": args.vector_search if args.backend == "postgres" else "faiss-flat",
        "chunks": args.chunks,
        "skip_common": args.skip_common,
        "load_s": round(load_s, 1),
        "queries": len(timings),
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 2),
        "mean_ms": round(statistics.fmean(timings), 2),
        "dense_search_p50_ms": round(statistics.median(parts["dense"]), 2),
        "keyword_search_p50_ms": round(statistics.median(parts["keyword"]), 2),
        "own_chunk_in_top5": round(hits / len(timings), 3),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
