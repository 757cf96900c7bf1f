"""Dense vector index behind a small interface; faiss is imported only here.

One FAISS file per collection, an exact inner-product index (vectors are normalised, so scores
are cosine similarities) keyed by chunk id. It is derived data: when it disagrees with SQLite
(say after a crash between the two writes), it is rebuilt from the vectors kept in SQLite.

Several processes may share the files (the running bot and a `folio ingest` in a terminal, or two
nodes on one data folder). Each file has a lock file beside it, held with flock(2) while a process
writes or reloads it, and a generation file saying which SQLite generation (see
`DocumentStore.generation`) it holds, so a process can tell that its copy in memory is stale and
that the file it reloads is current.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from config.errors import ConfigError
from rag.embed import Vectors
from rag.storage import VectorIndex

logger = logging.getLogger(__name__)

__all__ = ["FaissIndex", "VectorIndex", "generation_file", "index_file", "lock_file"]


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


def generation_file(directory: Path, collection: str) -> Path:
    """Where the SQLite generation that the collection's index file holds is written."""
    return index_file(directory, collection).with_suffix(".generation")


def lock_file(directory: Path, collection: str) -> Path:
    """The file flock(2)ed while a process writes or reloads the collection's index."""
    return index_file(directory, collection).with_suffix(".lock")


class _CollectionLock:
    """A re-entrant lock for one collection: a thread lock within this process and, while
    `hold()` is entered, an exclusive flock on a file, so other processes take turns too.

    (flock belongs to an open file, so two opens in one process would block each other; the
    depth count keeps one open for nested holds.)
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self.thread = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self.thread:
            if self._depth == 0:
                self._fd = self._lock()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing the file releases the flock
                    self._fd = None

    def _lock(self) -> int | None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            try:  # a read-only data folder: an existing lock file can still be locked
                fd = os.open(self._path, os.O_RDONLY)
            except OSError as exc:
                # Nothing can be written here, so there is nothing to take turns over.
                logger.debug("cannot open lock file %s (%s); reading unlocked", self._path, exc)
                return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd


class FaissIndex:
    """Exact search (IndexFlatIP inside an IndexIDMap2), persisted per collection.

    Each collection's copy in memory carries the SQLite generation it equals, or None when that
    is unknown (a file without a generation file, or a change made without one).
    """

    def __init__(self, directory: Path, dimension: int) -> None:
        self._faiss = _faiss()
        self._directory = directory
        self._dimension = dimension
        self._indexes: dict[str, Any] = {}
        self._generations: dict[str, int | None] = {}
        self._locks: dict[str, _CollectionLock] = {}
        self._locks_lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, collection: str) -> Path:
        return index_file(self._directory, collection)

    def _lock(self, collection: str) -> _CollectionLock:
        with self._locks_lock:
            lock = self._locks.get(collection)
            if lock is None:
                lock = self._locks[collection] = _CollectionLock(
                    lock_file(self._directory, collection)
                )
            return lock

    @contextmanager
    def locked(self, collection: str) -> Iterator[None]:
        """Hold the collection's lock against other threads and other processes (re-entrant):
        around a document write and the index update that follows it, or a reload."""
        with self._lock(collection).hold():
            yield

    def generation(self, collection: str) -> int | None:
        """The SQLite generation the copy in memory equals (None: not loaded, or unknown)."""
        with self._lock(collection).thread:
            return self._generations.get(collection)

    def _index(self, collection: str) -> Any:
        lock = self._lock(collection)
        with lock.thread:
            index = self._indexes.get(collection)
            if index is None:
                with lock.hold():  # never read a file another process is halfway through
                    index, self._generations[collection] = self._read(collection)
                self._indexes[collection] = index
            return index

    def _read(self, collection: str) -> tuple[Any, int | None]:
        """The index saved for a collection and its generation; an empty index if it is missing
        or unusable (its generation then None, so it is rebuilt when SQLite has chunks)."""
        path = self._path(collection)
        index = None
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
            return self._empty(), None
        return index, self._read_generation(collection)

    def _read_generation(self, collection: str) -> int | None:
        try:
            text = generation_file(self._directory, collection).read_text(encoding="ascii")
            return int(text.strip())
        except (OSError, ValueError):
            return None

    def _empty(self) -> Any:
        return self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self._dimension))

    def reload(self, collection: str) -> int | None:
        """Drop the copy in memory and read the saved one; return its generation (None if the
        file is missing, unreadable or of no known generation)."""
        with self.locked(collection):
            self._indexes.pop(collection, None)
            self._index(collection)
            return self._generations[collection]

    def _save(self, collection: str) -> None:
        """Write to a temporary file and rename, so a crash never leaves a torn index file; the
        generation file follows the index file, so a crash between them leaves an older
        generation (the index is then rebuilt), never a newer one."""
        path = self._path(collection)
        stamp = generation_file(self._directory, collection)
        generation = self._generations.get(collection)
        if generation is None:
            stamp.unlink(missing_ok=True)
        temporary = path.with_suffix(".tmp")
        try:
            self._faiss.write_index(self._indexes[collection], str(temporary))
            os.replace(temporary, path)
            if generation is not None:
                temporary.write_text(f"{generation}\n", encoding="ascii")
                os.replace(temporary, stamp)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a full disk must not keep a torn copy
            raise

    def _change(self, collection: str, generation: int | None) -> tuple[Any, int | None]:
        """The index to change in place, and the generation it will have afterwards: the given
        one only if the copy was at the one before (a single document write since), else
        unknown. Until the change is made it is unknown, so a failure midway forces a reload."""
        index = self._index(collection)
        before = self._generations.get(collection)
        self._generations[collection] = None
        after = generation if generation is not None and before == generation - 1 else None
        return index, after

    def add(
        self,
        collection: str,
        ids: Sequence[int],
        vectors: Vectors,
        *,
        generation: int | None = None,
    ) -> None:
        self.replace(collection, [], ids, vectors, generation=generation)

    def remove(
        self, collection: str, ids: Sequence[int], *, generation: int | None = None
    ) -> None:
        self.replace(
            collection, ids, [], np.zeros((0, self._dimension), np.float32), generation=generation
        )

    def replace(
        self,
        collection: str,
        removed: Sequence[int],
        ids: Sequence[int],
        vectors: Vectors,
        *,
        generation: int | None = None,
    ) -> None:
        """Remove old chunk ids and add new ones, saving once. `generation` is SQLite's
        generation after the document write these changes mirror."""
        if not len(removed) and not len(ids) and generation is None:
            return
        with self.locked(collection):
            index, after = self._change(collection, generation)
            if len(removed):
                index.remove_ids(np.asarray(removed, dtype=np.int64))
            if len(ids):
                index.add_with_ids(np.ascontiguousarray(vectors), np.asarray(ids, dtype=np.int64))
            self._generations[collection] = after
            self._save(collection)

    def search(self, collection: str, query: Vectors, limit: int) -> list[tuple[int, float]]:
        with self._lock(collection).thread:
            index = self._index(collection)
            if index.ntotal == 0:
                return []
            scores, ids = index.search(query.reshape(1, -1), min(limit, index.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def ids(self, collection: str) -> list[int]:
        with self._lock(collection).thread:
            index = self._index(collection)
            return sorted(int(i) for i in self._faiss.vector_to_array(index.id_map))

    def rebuild(
        self,
        collection: str,
        source: Iterator[tuple[list[int], Vectors]],
        *,
        generation: int | None = None,
    ) -> None:
        """Replace the collection's index with the vectors of `source` (SQLite at `generation`)
        and save it (an empty index that was never saved stays unsaved)."""
        with self.locked(collection):
            index = self._empty()
            for ids, vectors in source:
                index.add_with_ids(np.ascontiguousarray(vectors), np.asarray(ids, dtype=np.int64))
            self._indexes[collection] = index
            self._generations[collection] = generation
            if index.ntotal or self._path(collection).exists():
                self._save(collection)

    def ensure_consistent(
        self,
        collection: str,
        expected_ids: Sequence[int],
        source: Iterator[tuple[list[int], Vectors]],
        *,
        generation: int | None = None,
    ) -> bool:
        """Rebuild the collection's index from `source` if its ids differ. True if it rebuilt."""
        with self.locked(collection):
            if self.ids(collection) == sorted(expected_ids):
                return False
            logger.warning("vector index of %r disagrees with the database; rebuilding", collection)
            self.rebuild(collection, source, generation=generation)
            return True
