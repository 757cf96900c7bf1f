"""Answering: retrieve → abstain if the evidence is weak → compose from the documents' sentences
or prompt and generate (streamed) → keep the sentences a passage supports → cite them.

This is the one path every question takes (terminal, Discord, Slack, the web page, `folio ask`,
`folio eval`). The abstention rules are rag.abstain, the composition rag.compose, the grounding
rag.cite; this module puts them in order and times them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from rag.abstain import AbstentionRules
from rag.checked_writing import CheckedWriting
from rag.chunk import split_sentences
from rag.cite import content_words
from rag.compose import Part, compose, render_parts
from rag.extract import Evidence, covers, rank_evidence
from rag.followup import Standalone, standalone_question
from rag.generate import Generator
from rag.normalize import normalize_for_match, strip_invisible
from rag.options import EngineOptions
from rag.prompt import PromptBuilder
from rag.question_parts import question_parts
from rag.sentence_vectors import SentenceVectors
from rag.spelling import Spelling
from rag.storage import Store
from rag.store import question_terms
from rag.types import (
    Answer,
    AnswerProgress,
    CancelCheck,
    Citation,
    Passage,
    ProgressCallback,
    Timings,
    Turn,
)

logger = logging.getLogger(__name__)

# (question, collection, top_k or None for the configured one) -> passages, best first
Retrieve = Callable[[str, str, "int | None"], list[Passage]]


class AnswerPipeline:
    """Answers one question at a time, or several at once: `state` is the engine's lock, held
    only for the steps that must not overlap (search, evidence ranking), never for generation.
    `generator` is called only in the modes where the model writes (it loads on first call)."""

    def __init__(
        self,
        store: Store,
        generator: Callable[[], Generator],
        retrieve: Retrieve,
        rules: AbstentionRules,
        options: EngineOptions,
        state: threading.RLock,
        sentence_vectors: Callable[[], SentenceVectors],
        spelling: Spelling | None = None,
    ) -> None:
        # Evidence sentences' vectors, remembered, by the evidence embedder (int8 by default:
        # rag.embed.make_evidence_embedder), which also embeds the question they are scored on.
        self._sentence_vectors = sentence_vectors
        self._store = store
        self._generator = generator
        self._retrieve = retrieve
        self._rules = rules
        self._options = options
        self._state = state
        self._spelling = spelling

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
        generator = self._generator() if writes else None
        started = time.perf_counter()
        timings = Timings()
        question = strip_invisible(question).strip()
        if on_progress:
            on_progress(AnswerProgress("searching"))
        if self._spelling is not None:  # "diffrent" is searched, ranked and judged as "different"
            question = self._spelling.correct(
                question, lambda word: self._rules.mentions(collection, word, None, ()))
        standalone = standalone_question(question, history)
        query = standalone.query
        # Sentences are chosen from more passages than are shown as the closest pages.
        shown = options.retrieval.top_k
        passages = self._retrieve_for(standalone, collection, max(shown, options.evidence_passages))
        model = generator.name if generator is not None else "the documents' own sentences"
        answer = Answer("", [], passages[:shown], abstained=True, model=model, timings=timings)

        def finish(reason: str = "") -> Answer:
            if reason:
                logger.info("abstained: %s", reason)
                answer.declined_because = reason
            answer.citations = self._mark_from_image(answer.citations, collection)
            timings.total = time.perf_counter() - started
            return answer

        best = max((p.dense_score for p in passages), default=-1.0)
        if best < options.min_dense_score:
            timings.retrieval = time.perf_counter() - started
            return finish(f"best passage similarity {best:.2f}")
        unknown = (
            self._rules.unknown_terms(question, collection, passages)
            if options.abstain_on_unknown_terms
            else []
        )
        # Words of the question that no document uses (the unknown-name rules above have
        # judged them wording, not names) cannot count against any sentence's match.
        unmatchable = {word for term in question_terms(query)
                       if not self._rules.mentions(collection, term, None, passages)
                       for word in content_words(term)} | naming_only(query, passages)
        with self._state:
            sentences = self._sentence_vectors()
            evidence = rank_evidence(query, passages, sentences.embedder,
                                     unmatchable=unmatchable,
                                     embed_sentences=sentences.embed,
                                     context=standalone.context,
                                     context_weight=options.follow_up_weight)
        timings.retrieval = time.perf_counter() - started
        closest = max((e.match for e in evidence), default=0.0)
        answer.evidence_match = closest
        if unknown:
            return finish(f"the collection never mentions {', '.join(unknown)}")
        absent = (
            self._rules.names_missing_from(question, passages, collection)
            if options.abstain_on_unknown_terms
            else []
        )
        if absent:
            return finish(f"the documents found never mention {', '.join(absent)}")
        logger.debug("best evidence match %.3f", closest)
        if closest < options.min_evidence_score:
            return finish(f"no sentence answers the question closely enough ({closest:.2f})")

        if standalone.context:
            # A follow-up asks for more than the previous answer said: its sentences are not
            # quoted again (the near-repeat rule of rag.compose), unless nothing else answers.
            evidence = [e for e in evidence if not covers(
                standalone.context, e.sentence, options.composition.redundancy)] or evidence

        def page_text(document: str, page: int) -> str | None:
            return self._store.page_text(collection, document, page)

        # The model sees only the best sentences; its answer is checked against every retrieved
        # passage (measured: checking against the sentences alone cited wrong pages more often).
        support = evidence_passages(evidence[: options.evidence_sentences])

        # A sentence grounded on a page far less relevant than the best one is about something
        # else (measured: most wrong pages cited were such pages), so it is not cited.
        relevance = page_relevance(evidence)

        parts = compose(question, evidence, page_text, options.composition, query,
                        options.follow_up_weight)
        parts = self._with_other_parts(parts, query, passages, unmatchable, page_text)
        if generator is None:
            self._use_parts(answer, question, parts, collection)
            return finish()

        built = PromptBuilder(generator, options.prompt).build(question, support, history)
        # Every draft shows only checked sentences; in hybrid mode the documents' own sentences
        # are the first draft, before the model has written a word.
        writing = CheckedWriting(
            question, passages, page_text, relevance, options.relevance_margin,
            documents_parts=parts if options.answer_mode == "hybrid" else (),
        )
        if on_progress:
            on_progress(AnswerProgress("writing", writing.first_draft()))
        generation_started = time.perf_counter()

        def stream(text: str) -> None:
            draft = writing.draft(text)
            if on_progress and draft:
                on_progress(AnswerProgress("writing", draft))

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
        # A generated sentence is shown only if one passage says all of it: every content word
        # and number (what small models invent is a name, a number, a claim). In hybrid mode the
        # model's checked sentences lead; the documents' sentences it does not already say
        # follow, so the key fact is there even when the model left it out.
        written, answer.shortened = writing.final(result.text, result.finish_reason == "length")
        if writing.dropped:
            logger.info("dropped %d unsupported sentence(s)", writing.dropped)
        self._use_parts(answer, question, written, collection)
        return finish()

    def _with_other_parts(
        self,
        parts: list[Part],
        query: str,
        passages: Sequence[Passage],
        unmatchable: set[str],
        page_text: Callable[[str, int], str | None],
    ) -> list[Part]:
        """The answer to the whole question, followed by what each later part of a two-part
        question finds on its own (rag.question_parts): its best sentences, from the page that
        answers that part best, unless the answer already quotes them. A part that no sentence
        answers closely enough adds nothing."""
        options = self._options
        most = options.composition.part_sentences
        asked = question_parts(query)
        if len(asked) < 2 or not parts or most == 0:
            return parts
        limits = replace(options.composition, sentences=most, list_items=most)
        shown = {normalize_for_match(part.text) for part in parts}
        extended = list(parts)
        for part in asked[1:]:
            with self._state:
                sentences = self._sentence_vectors()
                evidence = rank_evidence(part, passages, sentences.embedder,
                                         unmatchable=unmatchable, embed_sentences=sentences.embed)
            if max((e.match for e in evidence), default=0.0) < options.min_evidence_score:
                continue
            for found in compose(part, evidence, page_text, limits):
                if normalize_for_match(found.text) not in shown:
                    shown.add(normalize_for_match(found.text))
                    extended.append(found)
        return extended

    def _retrieve_for(
        self, standalone: Standalone, collection: str, top_k: int
    ) -> list[Passage]:
        """The best `top_k` passages for the standalone question; a follow-up keeps to the
        documents the conversation was about when they have matching passages, and also draws on
        the passages that match the previous answer (after the `top_k`: they are where the
        conversation left off, not the closest pages to the new question)."""
        if not standalone.documents:
            found = self._retrieve(standalone.query, collection, top_k)
        else:
            wider = self._retrieve(standalone.query, collection, 2 * top_k)
            preferred = [p for p in wider if p.document in standalone.documents]
            others = [p for p in wider if p.document not in standalone.documents]
            found = (preferred + others)[:top_k]
        if not standalone.context or not self._options.follow_up_passages:
            return found
        have = {p.chunk_id for p in found}
        left_off = self._retrieve(standalone.context, collection, self._options.follow_up_passages)
        return found + [p for p in left_off if p.chunk_id not in have]

    def _use_parts(
        self, answer: Answer, question: str, parts: Sequence[Part], collection: str
    ) -> None:
        if not parts:
            return
        # The page marks in the text say "read from an image" too, like the sources line.
        marked = self._mark_from_image([p.citation for p in parts], collection)
        parts = [replace(p, citation=c) for p, c in zip(parts, marked, strict=True)]
        answer.text = render_parts(question, parts)
        answer.citations = distinct([p.citation for p in parts])
        answer.abstained = False

    def _mark_from_image(self, citations: list[Citation], collection: str) -> list[Citation]:
        """Citations whose quote was read from a page image say so ("read from an image")."""
        return [
            replace(c, from_image=True)
            if not c.from_image
            and self._store.quote_from_image(collection, c.document, c.page, c.quote)
            else c
            for c in citations
        ]


def naming_only(question: str, passages: Sequence[Passage]) -> set[str]:
    """Question words that name a document of the passages (a word of its file name) but are
    in none of their text: "the derisking handbook" for 18f-derisking-handbook.pdf, whose
    pages say "de-risking". They say which document is meant; no sentence can hold them."""
    named = content_words(" ".join(re.sub(r"[^A-Za-z0-9]+", " ", p.document) for p in passages))
    if not named:
        return set()
    wanted = content_words(question) & named
    if not wanted:
        return set()
    said: set[str] = set()
    for passage in passages:
        said |= content_words(passage.text) & wanted
    return wanted - said


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


def distinct(citations: Iterable[Citation]) -> list[Citation]:
    seen: dict[tuple[str, int], Citation] = {}
    for citation in citations:
        seen.setdefault((citation.document, citation.page), citation)
    return list(seen.values())


def repeats_itself(text: str) -> bool:
    """True once the model repeats a whole sentence (small models loop): stop generating."""
    sentences = split_sentences(text)
    complete = sentences[:-1]  # the last one may still be growing
    return len(complete) != len(set(complete))
