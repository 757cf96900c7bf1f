"""The PDFs as uploaded, in the shared Postgres: a document ingested on one node opens at its
cited page on every node's web page.

The database holds the bytes (`originals`, migration m003); each node keeps the files it has
served in its own data folder (`rag.originals.OriginalFiles`, the same layout as the single-node
store), so a page is read from the database once per node, not once per click. A cached copy
can outlive a forget on another node, but it is only ever found through a document the shared
store still has, and a sha256 names the same bytes whoever wrote it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rag.errors import DatabaseUnavailable
from rag.originals import OriginalFiles
from rag.postgres import PostgresDatabase

logger = logging.getLogger(__name__)


class SharedOriginals:
    """`OriginalFiles`' save / find / discard, with the database as the source of the bytes."""

    def __init__(self, database: PostgresDatabase, cache: OriginalFiles) -> None:
        self._db = database
        self._cache = cache

    def save(self, collection: str, sha256: str, data: bytes) -> None:
        self._cache.path(collection, sha256)  # a malformed digest is refused before any write
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO originals (collection, sha256, data) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (collection, sha256, data),
            )
        self._cache.save(collection, sha256, data)

    def find(self, collection: str, sha256: str) -> Path | None:
        cached = self._cache.find(collection, sha256)
        if cached is not None:
            return cached
        try:
            self._cache.path(collection, sha256)
        except ValueError:
            return None
        try:
            with self._db.transaction() as db:
                row = db.execute(
                    "SELECT data FROM originals WHERE collection = %s AND sha256 = %s",
                    (collection, sha256),
                ).fetchone()
        except DatabaseUnavailable as exc:
            logger.warning("original %s of %r not read: %s", sha256[:12], collection, exc)
            return None
        if row is None:
            return None
        self._cache.save(collection, sha256, bytes(row[0]))
        return self._cache.find(collection, sha256)

    def discard(self, collection: str, sha256: str) -> None:
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM originals WHERE collection = %s AND sha256 = %s", (collection, sha256)
            )
        self._cache.discard(collection, sha256)
