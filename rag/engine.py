"""The answering engine: ingest PDFs and answer questions about them, grounded and cited.

`RagEngine` owns the shared state (the store, the vector index, the lazily loaded models and the
lock they take turns on) and hands the work to one module per step of the data flow:
rag.ingest (document writes), rag.answering (the question path, with rag.abstain's rules and
rag.compose's answers), and rag.factory (built from settings). Models load lazily, once, on first
use (or at start with `warm_up()`), so commands like `folio docs` start instantly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from rag.abstain import AbstentionRules, vocabulary_of
from rag.answering import AnswerPipeline
from rag.backends import IndexFactory
from rag.embed import Embedder
from rag.english import english_words
from rag.generate import Generator
from rag.ingest import IngestPipeline
from rag.lazy import Lazy
from rag.normalize import strip_invisible
from rag.options import EngineOptions
from rag.originals import Originals
from rag.reembed import reconcile_embedder
from rag.retrieve import HybridRetriever
from rag.sentence_vectors import SentenceVectors
from rag.spelling import Spelling
from rag.storage import Store, VectorIndex
from rag.types import (
    Answer,
    CancelCheck,
    DocumentInfo,
    FileOutcome,
    IngestProgressCallback,
    IngestReport,
    Passage,
    ProgressCallback,
    Turn,
)

__all__ = ["EngineOptions", "RagEngine"]

logger = logging.getLogger(__name__)


class RagEngine:
    """Implements bot.ports.AnswerEngine over a document store, a vector index (built from
    `index` once the embedder's dimension is known) and local models."""

    def __init__(
        self,
        store: Store,
        embedder: Callable[[], Embedder],
        generator: Callable[[], Generator],
        index: IndexFactory,
        options: EngineOptions,
        originals: Originals | None = None,
        evidence_embedder: Callable[[Embedder], Embedder] = lambda index_embedder: index_embedder,
    ) -> None:
        """`evidence_embedder` turns the index's embedder into the one that scores an answer's
        candidate sentences (default: the same one)."""
        self._store = store
        self._originals = originals  # the PDFs as uploaded, for opening a cited page
        self._embedder = Lazy(embedder)
        self._generator = Lazy(generator)
        self._index = Lazy(lambda: index(self._embedder.get().dimension))
        self._options = options
        self._vocabulary = Lazy(lambda: vocabulary_of(self._embedder.get()))
        self._reconciled: set[str] = set()  # collections whose embedder was checked
        # Retrieval, evidence ranking, ingest and forget take turns (the embedder's tokenizer is
        # not thread-safe, and a search must not see half an ingest); generation, the slow
        # part, runs outside it, so with a generation server several answers overlap.
        self._state = threading.RLock()
        english = Lazy(english_words)
        self._rules = AbstentionRules(store, self._vocabulary.get, english.get)
        self._ingest = IngestPipeline(
            store, self._embedder.get, self._index.get, self._ready_index, options, originals,
            self._state,
        )
        self._sentence_vectors = Lazy(
            lambda: SentenceVectors(evidence_embedder(self._embedder.get())))
        self._answering = AnswerPipeline(
            store, self._generator.get, self._search, self._rules, options,
            self._state, self._sentence_vectors.get, Spelling(english.get, self._vocabulary.get),
        )

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        if self._options.answer_mode == "evidence":
            return "no generation model (answers quote the documents)"
        return self._generator.get().name if self._generator.loaded else "(not loaded)"

    @property
    def generator(self) -> Generator:
        return self._generator.get()

    @property
    def embedder(self) -> Embedder:
        return self._embedder.get()

    def warm_up(self) -> float:
        """Load the models answers need and run them once; return the seconds it took. In the
        evidence mode that is the embedder alone: the generation model is never loaded."""
        started = time.perf_counter()
        self._embedder.get().embed_query("warm up")
        self._sentence_vectors.get().embedder.embed_query("warm up")
        if self._options.answer_mode != "evidence":
            generator = self._generator.get()
            warm = getattr(generator, "warm_up", None)
            if callable(warm):
                warm()
        return time.perf_counter() - started

    def close(self) -> None:
        self._store.close()
        if self._generator.loaded:
            close = getattr(self._generator.get(), "close", None)
            if callable(close):
                close()  # the model's child process, if it has one

    def _ready_index(self, collection: str) -> VectorIndex:
        """The collection's vector index as of SQLite's latest document write.

        Another process (`folio ingest` beside the running bot, a second node) may have written
        since this one loaded the index: SQLite's generation then differs from the copy's, and
        the copy is reloaded from the file that process saved, or rebuilt from SQLite when the
        file does not hold that generation (a crash between the two writes, an older Folio).
        """
        index = self._index.get()
        if collection not in self._reconciled:
            # Once per process: the collection's vectors come from the configured embedder
            # (re-embedded from SQLite's texts if another one made them).
            with index.locked(collection):
                if reconcile_embedder(self._store, index, self._embedder.get(), collection):
                    self._rebuild_index(index, collection, self._store.generation(collection))
            self._reconciled.add(collection)
        if index.generation(collection) != self._store.generation(collection):
            with index.locked(collection):
                current = self._store.generation(collection)
                if index.generation(collection) != current and index.reload(collection) != current:
                    self._rebuild_index(index, collection, current)
        return index

    def _rebuild_index(self, index: VectorIndex, collection: str, generation: int) -> None:
        """Rebuild from SQLite's vectors (under the index lock, so no engine writes meanwhile)."""
        if self._store.chunk_ids(collection) or index.ids(collection):
            logger.info("vector index of %r is behind the database; rebuilding", collection)
        vectors = self._store.iter_vectors(collection, self._embedder.get().dimension)
        index.rebuild(collection, vectors, generation=generation)

    def check(self, collection: str) -> bool:
        """Verify the saved vector index against SQLite (its generation, then its chunk ids) and
        rebuild it if they differ. True if it was rebuilt."""
        with self._state:
            index = self._index.get()
            with index.locked(collection):
                current = self._store.generation(collection)
                if index.reload(collection) != current:
                    self._rebuild_index(index, collection, current)
                    return True
                return index.ensure_consistent(
                    collection,
                    self._store.chunk_ids(collection),
                    self._store.iter_vectors(collection, self._embedder.get().dimension),
                    generation=current,
                )

    # --- documents ---------------------------------------------------------------------------

    def documents(self, collection: str) -> list[DocumentInfo]:
        return self._store.documents(collection)

    def collections(self) -> list[str]:
        return self._store.collections()

    def page_text(self, collection: str, document: str, page: int) -> str | None:
        """The stored text of one page (what quotes are verified against)."""
        return self._store.page_text(collection, document, page)

    def forget(self, name: str, *, collection: str) -> DocumentInfo:
        return self._ingest.forget(name, collection=collection)

    def original_file(self, name: str, *, collection: str) -> Path | None:
        """The stored original PDF of document `name`, or None (unknown, or never kept)."""
        info = self._store.document(collection, name)
        if info is None or self._originals is None:
            return None
        return self._originals.find(collection, info.sha256)

    def ingest_bytes(
        self,
        name: str,
        data: bytes,
        *,
        collection: str,
        on_progress: IngestProgressCallback | None = None,
    ) -> IngestReport:
        return self._ingest.ingest_bytes(name, data, collection=collection, on_progress=on_progress)

    def ingest_paths(
        self,
        paths: Iterable[Path],
        *,
        collection: str,
        on_progress: IngestProgressCallback | None = None,
        on_file_done: Callable[[FileOutcome], None] | None = None,
    ) -> IngestReport:
        """Ingest files and folders (recursively, *.pdf)."""
        return self._ingest.ingest_paths(
            paths, collection=collection, on_progress=on_progress, on_file_done=on_file_done
        )

    # --- answering ---------------------------------------------------------------------------

    def retrieve(
        self, question: str, *, collection: str, top_k: int | None = None
    ) -> list[Passage]:
        with self._state:
            self._ready_index(collection)
            retriever = HybridRetriever(
                self._store, self._index.get(), self._embedder.get(), self._options.retrieval
            )
            return retriever.retrieve(strip_invisible(question), collection, top_k)

    def _search(self, question: str, collection: str, top_k: int | None) -> list[Passage]:
        return self.retrieve(question, collection=collection, top_k=top_k)

    def answer(
        self,
        question: str,
        *,
        collection: str,
        history: Sequence[Turn] = (),
        on_progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
    ) -> Answer:
        return self._answering.answer(
            question,
            collection=collection,
            history=history,
            on_progress=on_progress,
            cancelled=cancelled,
        )
