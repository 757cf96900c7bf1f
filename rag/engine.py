"""The answering engine: ingest PDFs and answer questions about them, grounded and cited.

This is the one path every question takes (terminal, Discord, Slack, `folio ask`, `folio eval`):
retrieve → abstain if the evidence is weak → prompt → generate (streamed) → keep the sentences a
passage supports → cite them with verified quotes. Models load lazily, once, on first use (or at
start with `warm_up()`), so commands like `folio docs` start instantly.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generic, TypeVar

from config.settings import Settings
from rag.chunk import Chunk, chunk_document, split_sentences
from rag.cite import drop_off_topic_pages, ground_sentences, says_it_does_not_know
from rag.compose import CompositionLimits, Part, compose, render_parts
from rag.embed import Embedder, make_embedder
from rag.errors import BadDocumentError, NotFoundError
from rag.extract import Evidence, covers, rank_evidence
from rag.followup import Standalone, standalone_question
from rag.generate import Generator, LlamaCppGenerator
from rag.index import FaissIndex
from rag.models import default_embedding_model, default_generation_model
from rag.normalize import FUNCTION_WORDS, strip_invisible
from rag.ocr import OcrOptions
from rag.originals import OriginalFiles
from rag.parse import ParsedDocument, ParseLimits, parse_pdf, sha256_of
from rag.prompt import PromptBuilder, PromptLimits, sanitize
from rag.reembed import reconcile_embedder
from rag.retrieve import HybridRetriever, RetrievalParams
from rag.store import DocumentStore, question_terms
from rag.types import (
    Answer,
    AnswerProgress,
    CancelCheck,
    Citation,
    DocumentInfo,
    FileOutcome,
    IngestProgressCallback,
    IngestReport,
    Passage,
    ProgressCallback,
    Timings,
    Turn,
    ocr_progress_name,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
EMBED_BATCH = 64


@dataclass(frozen=True, slots=True)
class EngineOptions:
    chunk_words: int
    chunk_overlap: int
    retrieval: RetrievalParams
    min_dense_score: float
    prompt: PromptLimits
    parse: ParseLimits
    min_evidence_score: float = 0.95
    evidence_sentences: int = 6
    abstain_on_unknown_terms: bool = True
    answer_mode: str = "evidence"
    min_support: float = 0.5
    relevance_margin: float = 0.3
    composition: CompositionLimits = field(default_factory=CompositionLimits)


class Lazy(Generic[T]):
    """A value built on first use, at most once, thread-safely."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
        return self._value


def safe_document_name(name: str) -> str:
    """A display name from an untrusted file name: base name only, no control characters."""
    # Lone surrogates (possible in JSON from chat platforms) cannot be stored as UTF-8.
    name = name.encode("utf-8", "replace").decode("utf-8")
    base = re.sub(r"\s+", " ", re.split(r"[\\/]", strip_invisible(name))[-1])
    previous = None
    while previous != base:  # strip spaces and dots until stable: ". ." and "a ." included
        previous, base = base, base.strip().strip(".")
    return base[:120] or "document.pdf"


class RagEngine:
    """Implements bot.ports.AnswerEngine over a SQLite store, a FAISS index and local models."""

    def __init__(
        self,
        store: DocumentStore,
        embedder: Callable[[], Embedder],
        generator: Callable[[], Generator],
        index_dir: Path,
        options: EngineOptions,
        originals: OriginalFiles | None = None,
    ) -> None:
        self._store = store
        self._originals = originals  # the PDFs as uploaded, for opening a cited page
        self._embedder = Lazy(embedder)
        self._generator = Lazy(generator)
        self._index = Lazy(lambda: FaissIndex(index_dir, self._embedder.get().dimension))
        self._options = options
        self._vocabulary = Lazy(lambda: _vocabulary_of(self._embedder.get()))
        self._reconciled: set[str] = set()  # collections whose embedder was checked
        # Retrieval, evidence ranking, ingest and forget take turns (the embedder's tokenizer is
        # not thread-safe, and a search must not see half an ingest); generation, the slow
        # part, runs outside it, so with a generation server several answers overlap.
        self._state = threading.RLock()

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

    def _ready_index(self, collection: str) -> FaissIndex:
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

    def _rebuild_index(self, index: FaissIndex, collection: str, generation: int) -> None:
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
        with self._state:
            info = self._forget(name, collection)
            self._drop_original(collection, info.sha256)
            return info

    def original_file(self, name: str, *, collection: str) -> Path | None:
        """The stored original PDF of document `name`, or None (unknown, or never kept)."""
        info = self._store.document(collection, name)
        if info is None or self._originals is None:
            return None
        return self._originals.find(collection, info.sha256)

    def _keep_original(self, collection: str, prepared: _Prepared) -> None:
        if self._originals is not None and prepared.data:
            self._originals.save(collection, prepared.sha256, prepared.data)

    def _drop_original(self, collection: str, sha256: str) -> None:
        if self._originals is not None and self._store.find_by_sha(collection, sha256) is None:
            self._originals.discard(collection, sha256)

    def _forget(self, name: str, collection: str) -> DocumentInfo:
        info = self._store.document(collection, name)
        if info is None:
            known = ", ".join(d.name for d in self._store.documents(collection)) or "none"
            raise NotFoundError(
                f"No document named {name!r} in this collection (indexed: {known})."
            )
        index = self._index.get()
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
        one is read and parsed in the background, so both cores are busy."""
        started = time.perf_counter()
        report = IngestReport()
        files = list(expand_paths(paths))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="folio-prefetch") as pool:
            pending: Future[_Prepared] | None = None
            for position, path in enumerate(files):
                current = (
                    pending.result() if pending else self._prepare(path, collection, on_progress)
                )
                pending = (
                    pool.submit(self._prepare, files[position + 1], collection, on_progress)
                    if position + 1 < len(files)
                    else None
                )
                with self._state:
                    outcome = self._finish(current, collection, on_progress)
                report.outcomes.append(outcome)
                if on_file_done is not None:
                    on_file_done(outcome)
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(
        self, path: Path, collection: str, on_progress: IngestProgressCallback | None = None
    ) -> _Prepared:
        """Read, deduplicate and parse one file (runs ahead on the prefetch thread)."""
        name = safe_document_name(path.name)
        try:
            data = read_limited(path, self._options.parse.max_bytes)
        except BadDocumentError as exc:
            return _Prepared(name, "", None, exc.message)
        return self._parse(name, data, collection, on_progress)

    def _parse(
        self,
        name: str,
        data: bytes,
        collection: str,
        on_progress: IngestProgressCallback | None = None,
    ) -> _Prepared:
        sha = sha256_of(data)
        duplicate = self._store.find_by_sha(collection, sha)
        if duplicate is not None:
            return _Prepared(name, sha, None, "", duplicate_of=duplicate, data=data)

        def ocr_progress(done: int, total: int) -> None:
            # OCR pages get their own count (and bar): they are far slower than text pages.
            if on_progress is not None:
                on_progress(ocr_progress_name(name), done, total)

        try:
            parsed = parse_pdf(data, self._options.parse, ocr_progress)
        except BadDocumentError as exc:
            return _Prepared(name, sha, None, exc.message)
        return _Prepared(name, sha, parsed, "", data=data)

    def _ingest_one(
        self, name: str, data: bytes, collection: str, on_progress: IngestProgressCallback | None
    ) -> FileOutcome:
        prepared = self._parse(name, data, collection, on_progress)
        with self._state:
            return self._finish(prepared, collection, on_progress)

    def _finish(
        self, prepared: _Prepared, collection: str, on_progress: IngestProgressCallback | None
    ) -> FileOutcome:
        """Chunk, embed in bounded batches, and commit one parsed file to both stores."""
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
        embedder = self._embedder.get()
        index = self._ready_index(collection)
        vectors = []
        for _start, batch in _batches(chunks, EMBED_BATCH):
            vectors.append(embedder.embed_documents([_embedding_text(c) for c in batch]))
            if on_progress is not None:
                on_progress(name, batch[-1].page, total_pages)
        import numpy as np

        matrix = (
            np.concatenate(vectors)
            if vectors
            else np.zeros((0, embedder.dimension), dtype=np.float32)
        )
        warnings = list(parsed.warnings)
        with index.locked(collection):  # one writer at a time, across processes too
            self._ready_index(collection)  # with what another process wrote meanwhile
            previous = self._store.document(collection, name)
            try:
                self._keep_original(collection, prepared)
                removed, ids = self._store.put_document(
                    collection, name, prepared.sha256, parsed, chunks, matrix
                )
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

    def _mark_from_image(self, citations: list[Citation], collection: str) -> list[Citation]:
        """Citations whose quote was read from a page image say so ("read from an image")."""
        return [
            replace(c, from_image=True)
            if not c.from_image
            and self._store.quote_from_image(collection, c.document, c.page, c.quote)
            else c
            for c in citations
        ]

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

    def answer(
        self,
        question: str,
        *,
        collection: str,
        history: Sequence[Turn] = (),
        on_progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
    ) -> Answer:
        options = self._options
        writes = options.answer_mode != "evidence"
        # The model loads once, on first use, and only in the modes where it writes.
        generator = self._generator.get() if writes else None
        embedder = self._embedder.get()
        started = time.perf_counter()
        timings = Timings()
        question = strip_invisible(question).strip()
        if on_progress:
            on_progress(AnswerProgress("searching"))
        standalone = standalone_question(question, history)
        query = standalone.query
        passages = self._retrieve_for(standalone, collection)
        model = generator.name if generator is not None else "the documents' own sentences"
        answer = Answer("", [], passages, abstained=True, model=model, timings=timings)

        def finish(reason: str = "") -> Answer:
            if reason:
                logger.info("abstained: %s", reason)
            answer.citations = self._mark_from_image(answer.citations, collection)
            timings.total = time.perf_counter() - started
            return answer

        best = max((p.dense_score for p in passages), default=-1.0)
        if best < options.min_dense_score:
            timings.retrieval = time.perf_counter() - started
            return finish(f"best passage similarity {best:.2f}")
        unknown = (
            self._unknown_terms(question, collection, passages)
            if options.abstain_on_unknown_terms
            else []
        )
        with self._state:
            evidence = rank_evidence(query, passages, embedder)
        timings.retrieval = time.perf_counter() - started
        if unknown:
            return finish(f"the collection never mentions {', '.join(unknown)}")
        absent = (
            self._names_missing_from(question, passages, collection)
            if options.abstain_on_unknown_terms
            else []
        )
        if absent:
            return finish(f"the documents found never mention {', '.join(absent)}")
        if not evidence or evidence[0].score < options.min_evidence_score:
            return finish("no sentence answers the question closely enough")

        def page_text(document: str, page: int) -> str | None:
            return self._store.page_text(collection, document, page)

        # The model sees only the best sentences; its answer is checked against every retrieved
        # passage (measured: checking against the sentences alone cited wrong pages more often).
        support = evidence_passages(evidence[: options.evidence_sentences])

        # A sentence grounded on a page far less relevant than the best one is about something
        # else (measured: most wrong pages cited were such pages), so it is not cited.
        relevance = page_relevance(evidence)

        parts = compose(question, evidence, page_text, options.composition)
        if generator is None:
            self._use_parts(answer, question, parts, collection)
            return finish()

        built = PromptBuilder(generator, options.prompt).build(question, support, history)
        if on_progress:
            on_progress(AnswerProgress("writing"))
        generation_started = time.perf_counter()

        def stream(text: str) -> None:
            if on_progress:
                on_progress(AnswerProgress("writing", text))

        result = generator.generate(
            built.prompt,
            max_tokens=built.answer_budget,
            on_text=stream,
            cancelled=cancelled,
            stop_when=repeats_itself,
            messages=built.messages,
        )
        timings.generation = time.perf_counter() - generation_started
        timings.first_token = result.first_token_s
        answer.tokens = result.completion_tokens
        answer.prompt_tokens = result.prompt_tokens
        text, answer.shortened = complete_sentences(
            as_sentences(sanitize(result.text)), result.finish_reason == "length"
        )
        written: list[Part] = []
        if text and not says_it_does_not_know(text):
            # A generated sentence is shown only if one passage says all of it: every content
            # word and number (what small models invent is a name, a number, a claim).
            grounded = ground_sentences(text, passages, page_text, strict=True)
            grounded = drop_off_topic_pages(grounded, relevance, options.relevance_margin)
            written = [Part(g.text, g.citation) for g in grounded if g.citation is not None]
            if len(written) < len(grounded):
                answer.shortened = False  # what was cut off is not what is shown
                logger.info("dropped %d unsupported sentence(s)", len(grounded) - len(written))
        if options.answer_mode == "hybrid":
            # The model's checked sentences lead; the documents' sentences it does not already
            # say follow, so the key fact is there even when the model left it out.
            said = " ".join(p.text for p in written)
            written += [p for p in parts if not covers(said, p.text)]
        self._use_parts(answer, question, written, collection)
        return finish()

    def _retrieve_for(self, standalone: Standalone, collection: str) -> list[Passage]:
        """Passages for the standalone question; a follow-up keeps to the documents the
        conversation was about when they have matching passages."""
        top_k = self._options.retrieval.top_k
        if not standalone.documents:
            return self.retrieve(standalone.query, collection=collection)
        wider = self.retrieve(standalone.query, collection=collection, top_k=2 * top_k)
        preferred = [p for p in wider if p.document in standalone.documents]
        others = [p for p in wider if p.document not in standalone.documents]
        return (preferred + others)[:top_k]

    def _use_parts(
        self, answer: Answer, question: str, parts: Sequence[Part], collection: str
    ) -> None:
        if not parts:
            return
        # The page marks in the text say "read from an image" too, like the sources line.
        marked = self._mark_from_image([p.citation for p in parts], collection)
        parts = [replace(p, citation=c) for p, c in zip(parts, marked, strict=True)]
        answer.text = render_parts(question, parts)
        answer.citations = _distinct([p.citation for p in parts])
        answer.abstained = False

    def _unknown_terms(
        self, question: str, collection: str, passages: Sequence[Passage] = ()
    ) -> list[str]:
        """Names in the question (not common words) that no chunk of the collection contains."""
        vocabulary = self._vocabulary.get()
        unknown = []
        for term in question_terms(question):
            if "-" in term or "." in term or term.isdigit() or len(term) < 3:
                continue  # multi-part terms and numbers are matched loosely; don't judge them
            if term in _CONTRACTIONS or any(form in vocabulary for form in word_forms(term)):
                continue
            if not self._mentions(collection, term, None, passages):
                unknown.append(term)
        return unknown

    def _mentions(
        self, collection: str, term: str, documents: Sequence[str] | None,
        passages: Sequence[Passage],
    ) -> bool:
        """Whether the documents mention `term`: as a word, as another form of it ("binaries",
        "binary"), as a word of a document's file name, or as the initials of words in the
        passages found ("NOSA": NASA Open Source Agreement)."""
        if self._store.term_in_collection(collection, term, documents):
            return True
        root = word_root(term)
        if len(root) >= 4 and self._store.term_in_collection(
            collection, root, documents, prefix=True
        ):
            return True
        names = documents if documents is not None else [p.document for p in passages]
        titles = [" ".join(re.split(r"[^a-z0-9]+", name.lower())) for name in names]
        if any(term in title.split() or spells_initials(term, title) for title in titles):
            return True
        return any(spells_initials(term, p.text) for p in passages)

    def _names_missing_from(
        self, question: str, passages: Sequence[Passage], collection: str
    ) -> list[str]:
        """Names in the question that none of the documents the passages come from mentions.

        A name (a capitalised word inside the question, like "Spanish" or "Telegram") that the
        only documents able to answer never mention means the question is about something
        they don't cover, even when the rest of it matches them closely.
        """
        documents = sorted({p.document for p in passages})
        if not documents:
            return []
        missing = []
        for name in question_names(question):
            for term in question_terms(name):
                if "-" in term or "." in term or term.isdigit() or len(term) < 3:
                    continue
                if term in _CONTRACTIONS or term in missing:
                    continue
                if not self._mentions(collection, term, documents, passages):
                    missing.append(term)
        return missing


def word_forms(word: str) -> list[str]:
    """The word and the singular or base forms it may inflect ("binaries" -> "binary",
    "greyed" -> "grey"), to look up in a vocabulary."""
    forms = [word, word_root(word)]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith(("es", "ed")):
        forms.append(word[:-1])  # "notes" -> "note", "stored" -> "store"
    return forms


def word_root(word: str) -> str:
    """A crude root shared by a word's inflections: "binaries" -> "binar", "cutoffs" ->
    "cutoff", "greyed" -> "grey" (a prefix to search for, not a dictionary form)."""
    for suffix in ("ies", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def spells_initials(term: str, text: str) -> bool:
    """Whether consecutive words of `text` start with the letters of `term`, with or without
    its function words ("NOSA": NASA Open Source Agreement; "DoD": Department of Defense), so
    an acronym counts as mentioned where its expansion is written out."""
    if not 2 <= len(term) <= 8 or not term.isalpha():
        return False
    term = term.lower()
    every = re.findall(r"[a-z][a-z'-]*", text.lower())
    content = [w for w in every if w not in FUNCTION_WORDS]
    n = len(term)
    return any(
        "".join(w[0] for w in words[i : i + n]) == term
        for words in (every, content)
        for i in range(len(words) - n + 1)
    )


def question_names(question: str) -> list[str]:
    """Capitalised words that do not open a sentence (and are not "I"): the names a question
    uses, such as products, places, languages, people and acronyms."""
    names = []
    for sentence in re.split(r"(?<=[.!?])\s+", question.strip()):
        words = re.findall(r"[^\W_][\w'’.-]*", sentence)
        for word in (w.rstrip(".'’-") for w in words[1:]):
            if word != "I" and any(ch.isupper() for ch in word):
                names.append(word)
    return names


_CONTRACTIONS = frozenset(
    [
        "doesn",
        "isn",
        "wasn",
        "aren",
        "weren",
        "didn",
        "don",
        "hasn",
        "haven",
        "hadn",
        "won",
        "wouldn",
        "shouldn",
        "couldn",
    ]
)


def page_relevance(evidence: Sequence[Evidence]) -> dict[tuple[str, int], float]:
    """How well each page answers the question: the score of its best evidence sentence."""
    best: dict[tuple[str, int], float] = {}
    for item in evidence:
        key = (item.passage.document, item.passage.page)
        best[key] = max(best.get(key, item.score), item.score)
    return best


def evidence_passages(evidence: Sequence[Evidence]) -> list[Passage]:
    """Group evidence sentences by their passage (best passage first, sentences in reading
    order), so the prompt holds only the sentences that matter."""
    groups: dict[int, list[Evidence]] = {}
    for item in evidence:
        groups.setdefault(item.passage.chunk_id, []).append(item)
    result = []
    for items in groups.values():
        passage = items[0].passage
        ordered = sorted(items, key=lambda e: passage.text.find(e.sentence))
        result.append(
            Passage(
                chunk_id=passage.chunk_id,
                document=passage.document,
                page=passage.page,
                text=" ".join(e.sentence for e in ordered),
                score=max(e.score for e in items),
                dense_score=passage.dense_score,
                keyword_rank=passage.keyword_rank,
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class _Prepared:
    name: str
    sha256: str
    parsed: ParsedDocument | None
    error: str
    duplicate_of: DocumentInfo | None = None
    data: bytes = field(default=b"", repr=False)  # the file itself, kept as the original


def _vocabulary_of(embedder: Embedder) -> frozenset[str]:
    vocabulary = getattr(embedder, "vocabulary", None)
    return vocabulary() if callable(vocabulary) else frozenset()


def _embedding_text(chunk: Chunk) -> str:
    return chunk.text


def _batches(items: Sequence[T], size: int) -> Iterator[tuple[int, Sequence[T]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _distinct(citations: Iterable[Citation]) -> list[Citation]:
    seen: dict[tuple[str, int], Citation] = {}
    for citation in citations:
        seen.setdefault((citation.document, citation.page), citation)
    return list(seen.values())


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders expanded to their *.pdf files (recursively, sorted)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf"
            )
        else:
            yield path


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


_ENUMERATOR = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")


def as_sentences(text: str) -> str:
    """The model's text as plain sentences: list numbers and bullets off each line, and each
    line ended as a sentence, so "1. Graph anonymization\n2. Author identification" becomes
    two sentences rather than fragments like "2." that no page supports."""
    lines = [kept for line in text.splitlines() if (kept := _ENUMERATOR.sub("", line).strip())]
    # The last line keeps its ending: if generation stopped mid-sentence, it is trimmed later.
    return " ".join(
        line if index == len(lines) - 1 or line.endswith((".", "!", "?", ":", ";")) else f"{line}."
        for index, line in enumerate(lines)
    )


def complete_sentences(text: str, hit_limit: bool) -> tuple[str, bool]:
    """Drop repeated sentences; if generation hit its limit, trim to the last full sentence."""
    sentences: list[str] = []
    for sentence in split_sentences(text.strip()):
        if sentence not in sentences:
            sentences.append(sentence)
    shortened = False
    if hit_limit and sentences and not sentences[-1].rstrip("\"')]").endswith((".", "!", "?")):
        sentences.pop()
        shortened = True
    return " ".join(sentences), shortened


def repeats_itself(text: str) -> bool:
    """True once the model repeats a whole sentence (small models loop): stop generating."""
    sentences = split_sentences(text)
    complete = sentences[:-1]  # the last one may still be growing
    return len(complete) != len(set(complete))


def build_engine(
    settings: Settings, *, generator: Callable[[], Generator] | None = None
) -> RagEngine:
    """Construct the engine from settings (models load on first use). `generator` replaces the
    configured generation back end (another model runner, or a test's)."""
    options = EngineOptions(
        chunk_words=settings.chunking.target_words,
        chunk_overlap=settings.chunking.overlap_words,
        retrieval=RetrievalParams(
            top_k=settings.retrieval.top_k,
            candidates=settings.retrieval.candidates,
            rrf_k=settings.retrieval.rrf_k,
            dense_weight=settings.retrieval.dense_weight,
            keyword_weight=settings.retrieval.keyword_weight,
        ),
        min_dense_score=settings.retrieval.min_dense_score,
        min_evidence_score=settings.retrieval.min_evidence_score,
        evidence_sentences=settings.retrieval.evidence_sentences,
        abstain_on_unknown_terms=settings.retrieval.abstain_on_unknown_terms,
        relevance_margin=settings.retrieval.relevance_margin,
        answer_mode=settings.generator.answer_mode,
        composition=CompositionLimits(**settings.answer.model_dump()),
        prompt=PromptLimits(
            max_passages=settings.retrieval.prompt_passages,
            passage_tokens=settings.retrieval.prompt_passage_tokens,
            answer_tokens=settings.generator.max_answer_tokens,
        ),
        parse=ParseLimits(
            max_bytes=int(settings.ingest.max_file_mb * 1_000_000),
            max_pages=settings.ingest.max_pages,
            timeout_s=settings.ingest.parse_timeout_s,
            memory_mb=settings.ingest.parse_memory_mb,
            text_parser=settings.ingest.text_parser,
            ocr=OcrOptions(
                enabled=settings.ingest.ocr,
                figures=settings.ingest.ocr_figures,
                page_timeout_s=settings.ingest.ocr_page_timeout_s,
                max_pages=settings.ingest.ocr_max_pages,
                min_confidence=settings.ingest.ocr_min_confidence,
                memory_mb=settings.ingest.ocr_memory_mb,
                threads=settings.ingest.ocr_threads,
                dpi=settings.ingest.ocr_dpi,
                figure_min_area=settings.ingest.ocr_figure_min_area,
            ),
        ),
    )
    embedding = settings.embedding
    generation = settings.generator

    def embedder() -> Embedder:
        return make_embedder(
            embedding.model_path or default_embedding_model(),
            backend=embedding.backend,
            precision=embedding.precision,
            batch_size=embedding.batch_size,
            query_cache_size=embedding.query_cache_size,
            threads=embedding.threads,
            cache_dir=settings.model_cache_dir,
        )

    def make_generator() -> Generator:
        if generation.backend == "openai":
            from rag.generate_openai import OpenAICompatibleGenerator

            api_key = settings.generator_api_key
            return OpenAICompatibleGenerator(
                generation.base_url,
                model_name=generation.model_name,
                api_key=api_key.get_secret_value() if api_key is not None else None,
                context_tokens=generation.context_tokens,
                connect_timeout_s=generation.connect_timeout_s,
                read_timeout_s=generation.read_timeout_s,
                retries=generation.retries,
                temperature=generation.temperature,
                repeat_penalty=generation.repeat_penalty,
                tokenizer_path=generation.tokenizer_path,
            )
        local = functools.partial(
            LlamaCppGenerator,
            generation.model_path or default_generation_model(),
            context_tokens=generation.context_tokens,
            threads=generation.threads,
            batch_tokens=generation.batch_tokens,
            temperature=generation.temperature,
            repeat_penalty=generation.repeat_penalty,
            extra_buffers=generation.extra_buffer_types,
        )
        if generation.isolate:
            from rag.generate_isolated import IsolatedGenerator

            return IsolatedGenerator(local)
        return local()

    return RagEngine(
        DocumentStore(settings.documents_db),
        embedder,
        generator or make_generator,
        settings.index_dir,
        options,
        OriginalFiles(settings.originals_dir),
    )
