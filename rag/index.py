"""Dense vector index behind a small interface; faiss is imported only here.

One FAISS file per collection, an exact inner-product index (vectors are normalised, so scores
are cosine similarities) keyed by chunk id. It is derived data: when it disagrees with SQLite
(say after a crash between the two writes), it is rebuilt from the vectors kept in SQLite.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from config.errors import ConfigError
from rag.embed import Vectors

logger = logging.getLogger(__name__)


class VectorIndex(Protocol):
    """Nearest-neighbour search over chunk vectors, scoped by collection."""

    def add(self, collection: str, ids: Sequence[int], vectors: Vectors) -> None: ...

    def remove(self, collection: str, ids: Sequence[int]) -> None: ...

    def search(self, collection: str, query: Vectors, limit: int) -> list[tuple[int, float]]: ...

    def ensure_consistent(
        self,
        collection: str,
        expected_ids: Sequence[int],
        source: Iterator[tuple[list[int], Vectors]],
    ) -> bool: ...


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError(
            "faiss is not installed: run scripts/setup (pip install faiss-cpu)."
        ) from exc
    return faiss


def _file_name(collection: str) -> str:
    """A readable, collision-free file name ("team:1" and "team_1" must not share a file)."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", collection)[:60]
    digest = hashlib.sha256(collection.encode("utf-8")).hexdigest()[:10]
    return f"{safe}-{digest}.faiss"


def index_file(directory: Path, collection: str) -> Path:
    """Where the vector index of a collection is stored."""
    return directory / _file_name(collection)


class FaissIndex:
    """Exact search (IndexFlatIP inside an IndexIDMap2), persisted per collection."""

    def __init__(self, directory: Path, dimension: int) -> None:
        self._faiss = _faiss()
        self._directory = directory
        self._dimension = dimension
        self._indexes: dict[str, Any] = {}
        self._lock = threading.RLock()
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, collection: str) -> Path:
        return index_file(self._directory, collection)

    def _index(self, collection: str) -> Any:
        index = self._indexes.get(collection)
        if index is None:
            path = self._path(collection)
            if path.exists():
                try:
                    index = self._faiss.read_index(str(path))
                except RuntimeError:
                    logger.warning("vector index %s is unreadable; it will be rebuilt", path)
                    index = None
                if index is not None and index.d != self._dimension:
                    logger.warning("vector index %s has another dimension; rebuilding", path)
                    index = None
            if index is None:
                index = self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self._dimension))
            self._indexes[collection] = index
        return index

    def _save(self, collection: str) -> None:
        """Write to a temporary file and rename, so a crash never leaves a torn index file."""
        path = self._path(collection)
        temporary = path.with_suffix(".tmp")
        try:
            self._faiss.write_index(self._indexes[collection], str(temporary))
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a full disk must not keep a torn copy
            raise

    def add(self, collection: str, ids: Sequence[int], vectors: Vectors) -> None:
        if not len(ids):
            return
        with self._lock:
            index = self._index(collection)
            index.add_with_ids(np.ascontiguousarray(vectors), np.asarray(ids, dtype=np.int64))
            self._save(collection)

    def remove(self, collection: str, ids: Sequence[int]) -> None:
        if not len(ids):
            return
        with self._lock:
            index = self._index(collection)
            index.remove_ids(np.asarray(ids, dtype=np.int64))
            self._save(collection)

    def replace(
        self, collection: str, removed: Sequence[int], ids: Sequence[int], vectors: Vectors
    ) -> None:
        """Remove old chunk ids and add new ones, saving once."""
        with self._lock:
            index = self._index(collection)
            if len(removed):
                index.remove_ids(np.asarray(removed, dtype=np.int64))
            if len(ids):
                index.add_with_ids(np.ascontiguousarray(vectors), np.asarray(ids, dtype=np.int64))
            self._save(collection)

    def search(self, collection: str, query: Vectors, limit: int) -> list[tuple[int, float]]:
        with self._lock:
            index = self._index(collection)
            if index.ntotal == 0:
                return []
            scores, ids = index.search(query.reshape(1, -1), min(limit, index.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def ids(self, collection: str) -> list[int]:
        with self._lock:
            index = self._index(collection)
            return sorted(int(i) for i in self._faiss.vector_to_array(index.id_map))

    def ensure_consistent(
        self,
        collection: str,
        expected_ids: Sequence[int],
        source: Iterator[tuple[list[int], Vectors]],
    ) -> bool:
        """Rebuild the collection's index from `source` if its ids differ. True if it rebuilt."""
        with self._lock:
            if self.ids(collection) == sorted(expected_ids):
                return False
            logger.warning("vector index of %r disagrees with the database; rebuilding", collection)
            index = self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self._dimension))
            for ids, vectors in source:
                index.add_with_ids(np.ascontiguousarray(vectors), np.asarray(ids, dtype=np.int64))
            self._indexes[collection] = index
            self._save(collection)
            return True
