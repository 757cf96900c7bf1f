"""Document writes: read, parse, chunk, embed and commit a PDF to SQLite and the vector index
(or take one out), one writer at a time.

While one file is embedded the next is read and parsed on a prefetch thread, so both cores are
busy. SQLite is the source of truth: a document is committed in one transaction, then the
vector index follows; a failure between the two is repaired from SQLite on next use.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from rag.chunk import Chunk, chunk_document
from rag.embed import Embedder, SharesCores, Vectors
from rag.errors import BadDocumentError, DatabaseUnavailable, NotFoundError
from rag.normalize import strip_invisible
from rag.options import EngineOptions
from rag.originals import Originals
from rag.parse import ParsedDocument, parse_pdf, sha256_of
from rag.prefetch import Prefetcher
from rag.storage import Store, VectorIndex
from rag.types import (
    DocumentInfo,
    FileOutcome,
    IngestProgressCallback,
    IngestReport,
    ocr_progress_name,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
EMBED_BATCH = 64
# Files parsed ahead of the one being embedded (rag.prefetch says why), by count and by bytes.
PREFETCH_FILES = 4
PREFETCH_BYTES = 64_000_000
# Files parsed at once, each in its own child. With one, embedding sat idle while a large file
# was parsed (a 70-page survey after a short paper: 1.2 s with a core idle); with two, the
# six papers ingest at 15.5-15.9 pages/s against 13.7-14.2 on 2 cores (README, Performance).
PARSE_LANES = 2


def safe_document_name(name: str) -> str:
    """A display name from an untrusted file name: base name only, no control characters."""
    # Lone surrogates (possible in JSON from chat platforms) cannot be stored as UTF-8.
    name = name.encode("utf-8", "replace").decode("utf-8")
    base = re.sub(r"\s+", " ", re.split(r"[\\/]", strip_invisible(name))[-1])
    previous = None
    while previous != base:  # strip spaces and dots until stable: ". ." and "a ." included
        previous, base = base, base.strip().strip(".")
    return base[:120] or "document.pdf"


class IngestPipeline:
    """Adds and removes documents of the engine's store and index.

    `ready_index` brings a collection's index up to SQLite's latest write (another process may
    have written); `state` is the engine's lock that searches and writes take turns on.
    """

    def __init__(
        self,
        store: Store,
        embedder: Callable[[], Embedder],
        index: Callable[[], VectorIndex],
        ready_index: Callable[[str], VectorIndex],
        options: EngineOptions,
        originals: Originals | None,
        state: threading.RLock,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._index = index
        self._ready_index = ready_index
        self._options = options
        self._originals = originals  # the PDFs as uploaded, for opening a cited page
        self._state = state
        self._ocr_turn = threading.Lock()  # files parse two at a time; their OCR takes turns

    def forget(self, name: str, *, collection: str) -> DocumentInfo:
        with self._state:
            info = self._delete(name, collection)
            self._drop_original(collection, info.sha256)
            return info

    def _keep_original(self, collection: str, prepared: Prepared) -> None:
        if self._originals is not None and prepared.data:
            self._originals.save(collection, prepared.sha256, prepared.data)

    def _drop_original(self, collection: str, sha256: str) -> None:
        if self._originals is not None and self._store.find_by_sha(collection, sha256) is None:
            self._originals.discard(collection, sha256)

    def _delete(self, name: str, collection: str) -> DocumentInfo:
        info = self._store.document(collection, name)
        if info is None:
            known = ", ".join(d.name for d in self._store.documents(collection)) or "none"
            raise NotFoundError(
                f"No document named {name!r} in this collection (indexed: {known})."
            )
        index = self._index()
        with index.locked(collection):  # one writer at a time, across processes too
            self._ready_index(collection)
            removed = self._store.delete_document(collection, name)
            index.remove(collection, removed, generation=self._store.generation(collection))
        return info

    def ingest_bytes(
        self,
        name: str,
        data: bytes,
        *,
        collection: str,
        on_progress: IngestProgressCallback | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        report.outcomes.append(
            self._ingest_one(safe_document_name(name), data, collection, on_progress)
        )
        report.seconds = time.perf_counter() - started
        return report

    def ingest_paths(
        self,
        paths: Iterable[Path],
        *,
        collection: str,
        on_progress: IngestProgressCallback | None = None,
        on_file_done: Callable[[FileOutcome], None] | None = None,
    ) -> IngestReport:
        """Ingest files and folders (recursively, *.pdf). While one file is embedded, the next
        ones are read and parsed in the background, so both cores are busy."""
        started = time.perf_counter()
        report = IngestReport()
        files = list(expand_paths(paths))
        with ThreadPoolExecutor(max_workers=PARSE_LANES, thread_name_prefix="folio-prefetch") as pool:
            ahead = Prefetcher(
                pool,
                lambda path: self._prepare(path, collection, on_progress),
                files,
                weight=_size_of,
                max_items=PREFETCH_FILES,
                max_weight=PREFETCH_BYTES,
            )
            try:
                for current in ahead:
                    with self._state:
                        outcome = self._finish(current, collection, on_progress, ahead.busy)
                    report.outcomes.append(outcome)
                    if on_file_done is not None:
                        on_file_done(outcome)
            finally:
                ahead.close()
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(
        self, path: Path, collection: str, on_progress: IngestProgressCallback | None = None
    ) -> Prepared:
        """Read, deduplicate and parse one file (runs ahead on the prefetch thread)."""
        name = safe_document_name(path.name)
        try:
            data = read_limited(path, self._options.parse.max_bytes)
        except BadDocumentError as exc:
            return Prepared(name, "", None, exc.message)
        return self._parse(name, data, collection, on_progress)

    def _parse(
        self,
        name: str,
        data: bytes,
        collection: str,
        on_progress: IngestProgressCallback | None = None,
    ) -> Prepared:
        sha = sha256_of(data)
        duplicate = self._store.find_by_sha(collection, sha)
        if duplicate is not None:
            return Prepared(name, sha, None, "", duplicate_of=duplicate, data=data)

        def ocr_progress(done: int, total: int) -> None:
            # OCR pages get their own count (and bar): they are far slower than text pages.
            if on_progress is not None:
                on_progress(ocr_progress_name(name), done, total)

        try:
            parsed = parse_pdf(data, self._options.parse, ocr_progress, self._ocr_turn)
        except BadDocumentError as exc:
            return Prepared(name, sha, None, exc.message)
        return Prepared(name, sha, parsed, "", data=data)

    def _ingest_one(
        self, name: str, data: bytes, collection: str, on_progress: IngestProgressCallback | None
    ) -> FileOutcome:
        prepared = self._parse(name, data, collection, on_progress)
        with self._state:
            return self._finish(prepared, collection, on_progress)

    def _embed(
        self,
        embedder: Embedder,
        chunks: Sequence[Chunk],
        parsing: Callable[[], bool] | None,
        progress: Callable[[int], None],
    ) -> Vectors:
        """Embed in batches of EMBED_BATCH; before each, an embedder that shares cores leaves
        one to a parse still running ahead (on 2 cores a worker sharing its core with the
        parse child holds the other worker up: 17.8 against 17.0 pages/s on the papers)."""
        import numpy as np

        sharing = embedder if isinstance(embedder, SharesCores) and parsing else None
        vectors = []
        try:
            for _start, batch in batches(chunks, EMBED_BATCH):
                if sharing is not None and parsing is not None:
                    sharing.yield_cores(1 if parsing() else 0)
                vectors.append(embedder.embed_documents([_embedding_text(c) for c in batch]))
                progress(batch[-1].page)
        finally:
            if sharing is not None:
                sharing.yield_cores(0)
        if not vectors:
            return np.zeros((0, embedder.dimension), dtype=np.float32)
        return np.concatenate(vectors)

    def _finish(
        self,
        prepared: Prepared,
        collection: str,
        on_progress: IngestProgressCallback | None,
        parsing: Callable[[], bool] | None = None,
    ) -> FileOutcome:
        """Chunk, embed in bounded batches, and commit one parsed file to both stores; while
        `parsing()` says a parse child is busy, the embedder leaves it a core."""
        name = prepared.name
        if prepared.duplicate_of is None and prepared.parsed is not None:
            # The prefetch thread checked before earlier files of this ingest were committed.
            prepared = replace(
                prepared, duplicate_of=self._store.find_by_sha(collection, prepared.sha256)
            )
        if prepared.duplicate_of is not None:
            try:  # fills in the original of a document indexed before originals were kept
                self._keep_original(collection, prepared)
            except OSError as exc:
                logger.warning("could not keep the original of %s: %s", name, exc)
            same = prepared.duplicate_of.name
            reason = "" if same == name else f"same content as {same}"
            return FileOutcome(
                name, "duplicate", prepared.duplicate_of.pages, prepared.duplicate_of.chunks, reason
            )
        if prepared.parsed is None:
            return FileOutcome(name, "failed", reason=prepared.error)
        parsed = prepared.parsed
        chunks = chunk_document(
            parsed.pages, self._options.chunk_words, self._options.chunk_overlap
        )
        total_pages = len(parsed.pages)

        def progress(page: int) -> None:
            if on_progress is not None:
                on_progress(name, page, total_pages)

        embedder = self._embedder()
        index = self._ready_index(collection)
        matrix = self._embed(embedder, chunks, parsing, progress)
        warnings = list(parsed.warnings)
        with index.locked(collection):  # one writer at a time, across processes too
            self._ready_index(collection)  # with what another process wrote meanwhile
            previous = self._store.document(collection, name)
            try:
                self._keep_original(collection, prepared)
                removed, ids = self._store.put_document(
                    collection, name, prepared.sha256, parsed, chunks, matrix
                )
            except DatabaseUnavailable:
                self._drop_original(collection, prepared.sha256)
                raise  # rolled back whole; the worker tries the job again
            except (sqlite3.Error, OSError) as exc:
                # One transaction: SQLite rolled back, the index never saw the file. A full or
                # read-only disk is an expected fault, so one log line, not a traceback.
                self._drop_original(collection, prepared.sha256)
                logger.warning("could not write %s to the data folder: %s", name, exc)
                return FileOutcome(
                    name, "failed", reason=f"cannot write to the data folder ({exc})"
                )
            if previous is not None and previous.sha256 != prepared.sha256:
                self._drop_original(collection, previous.sha256)
            try:
                generation = self._store.generation(collection)
                index.replace(collection, removed, ids, matrix, generation=generation)
            except (OSError, RuntimeError) as exc:
                # SQLite (the source of truth) has the whole file; the vector file is rebuilt
                # from it on next use, so the document is searchable and nothing is half-written.
                logger.warning("could not save the vector index after %s: %s", name, exc)
                warnings.append(f"the vector index file could not be saved ({exc}); "
                                "it is rebuilt from the database on next use")
        if on_progress is not None:
            on_progress(name, total_pages, total_pages)
        if parsed.pages_from_images:
            warnings.insert(0, f"{parsed.pages_from_images} page(s) read from images (OCR)")
        if parsed.pages_without_text:
            warnings.append(f"{parsed.pages_without_text} page(s) have no text and were skipped")
        warning = "; ".join(warnings)
        return FileOutcome(
            name,
            "replaced" if removed else "added",
            total_pages,
            len(chunks),
            warning,
            ocr_pages=parsed.pages_from_images,
            parser=parsed.parser,
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    name: str
    sha256: str
    parsed: ParsedDocument | None
    error: str
    duplicate_of: DocumentInfo | None = None
    data: bytes = field(default=b"", repr=False)  # the file itself, kept as the original


def _embedding_text(chunk: Chunk) -> str:
    return chunk.text


def batches(items: Sequence[T], size: int) -> Iterator[tuple[int, Sequence[T]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders expanded to their *.pdf files (recursively, sorted)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf"
            )
        else:
            yield path


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # _prepare gives the reason


def read_limited(path: Path, max_bytes: int) -> bytes:
    """Read a file, refusing (with a reason) one that is missing or over the size limit."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise BadDocumentError(
                f"the file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise BadDocumentError("no such file") from None
    except IsADirectoryError:
        raise BadDocumentError("is a folder") from None
    except PermissionError:
        raise BadDocumentError("permission denied") from None
