"""The original bytes of every indexed PDF, so a citation can open the page it names.

Files live under the data folder, one folder per collection, named by their sha256
(`originals/<collection-slug>-<hash>/<sha256>.pdf`): a path is never built from a document's
(untrusted) name, so nothing a user uploads can point outside this folder. The SQLite store
stays the source of truth for what is indexed; a missing original only means the page can't be
opened (documents indexed before originals were kept get theirs when ingested again).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Originals(Protocol):
    """Where the original PDFs are kept: this folder (`OriginalFiles`) or the shared database
    (`rag.postgres_originals.SharedOriginals`)."""

    def save(self, collection: str, sha256: str, data: bytes) -> None: ...

    def find(self, collection: str, sha256: str) -> Path | None: ...

    def discard(self, collection: str, sha256: str) -> None: ...


class OriginalFiles:
    """Save, find and remove the original PDF of a document, by collection and sha256."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _folder(self, collection: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", collection)[:40].strip("-") or "c"
        digest = hashlib.sha256(collection.encode("utf-8")).hexdigest()[:12]
        return self._root / f"{slug}-{digest}"

    def path(self, collection: str, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self._folder(collection) / f"{sha256}.pdf"

    def find(self, collection: str, sha256: str) -> Path | None:
        """The stored file, or None if it was never kept."""
        try:
            path = self.path(collection, sha256)
        except ValueError:
            return None
        return path if path.is_file() else None

    def save(self, collection: str, sha256: str, data: bytes) -> None:
        """Write atomically (temporary file, fsync, rename); a file already there is kept.

        Raises OSError (a full or read-only disk): the caller reports it and indexes nothing.
        """
        path = self.path(collection, sha256)
        if path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-", suffix=".pdf")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def discard(self, collection: str, sha256: str) -> None:
        """Remove a file no document refers to any more (missing is fine)."""
        with contextlib.suppress(OSError, ValueError):
            self.path(collection, sha256).unlink()
