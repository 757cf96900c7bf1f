"""Keep a collection's vectors and its query vectors from one embedder.

The store records what made each collection's vectors (`identity_of`: model, dimension,
precision). When the configured embedder differs (another model, or int8 instead of fp32), the
collection is re-embedded once from the chunk texts SQLite keeps, with one log line saying so,
so documents and questions are always embedded by the same backend. A store written before the
identity was recorded is probed instead: if the embedder reproduces its stored vectors, they are
adopted as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from rag.embed import Embedder, identity_of, same_vectors
from rag.storage import Store, VectorIndex

logger = logging.getLogger(__name__)

BATCH = 64
PROBE_CHUNKS = 8
SAME_VECTORS = 0.999  # worst cosine for stored vectors to count as this embedder's own


def reconcile_embedder(
    store: Store, index: VectorIndex, embedder: Embedder, collection: str
) -> int:
    """Make the collection's vectors the embedder's own; return how many chunks were
    re-embedded (0 when they already were)."""
    current = identity_of(embedder)
    recorded = store.embedder_identity(collection)
    if recorded is not None and same_vectors(recorded, current):
        if recorded != current:  # recorded as ".../bf16" before bf16 shared fp32's identity
            store.set_embedder_identity(collection, current)
        return 0
    ids = store.chunk_ids(collection)
    if not ids or (recorded is None and _reproduces(store, embedder, ids[:PROBE_CHUNKS])):
        store.set_embedder_identity(collection, current)
        return 0
    logger.warning(
        "collection %r was embedded with %s, the embedder is now %s: re-embedding its %d "
        "chunks once so questions and documents use the same one",
        collection, recorded or "an unrecorded embedder", current, len(ids),
    )
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        store.update_vectors(batch, embedder.embed_documents(store.chunk_texts(batch)))
    index.remove(collection, ids)
    for batch_ids, vectors in store.iter_vectors(collection, embedder.dimension):
        index.add(collection, batch_ids, vectors)
    store.set_embedder_identity(collection, current)
    return len(ids)


def _reproduces(store: Store, embedder: Embedder, ids: Sequence[int]) -> bool:
    stored = store.raw_vectors(ids)
    width = embedder.dimension * 4
    if len(stored) != len(ids) or any(len(blob) != width for blob in stored.values()):
        return False
    old = np.stack([np.frombuffer(stored[i], dtype=np.float32) for i in ids])
    new = embedder.embed_documents(store.chunk_texts(ids))
    return bool(np.min(np.sum(old * new, axis=1)) >= SAME_VECTORS)
