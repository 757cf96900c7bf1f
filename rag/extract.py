"""Evidence sentences: the sentences of the retrieved passages that best answer the question.

Small local models paraphrase badly and drop key facts, so the sentences the documents
themselves use are scored (embedding similarity to the question plus keyword overlap) and used
as the answer's backbone: quoted verbatim when the model's answer is missing or unsupported, and
added after a generated answer that leaves out what the best sentence says.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, replace

import numpy as np

from rag.cite import compound_words, content_words
from rag.embed import Embedder, Vectors
from rag.normalize import FUNCTION_WORDS, normalize_for_match
from rag.statements import split_statements
from rag.types import Passage

MIN_SENTENCE_WORDS = 5
MAX_SENTENCE_WORDS = 80
# A quantity question ("how many...") is answered by a sentence that states a number: worth
# about two matching question words (measured on the dev set: 0.2-0.4 all help, 0.3 most).
NUMBER_BONUS = 0.3
# Below this share of function words a "sentence" is figure labels or table cells strung
# together by text extraction (prose is near 0.4, table rows 0.1), not a statement.
MIN_PROSE_RATIO = 0.05


@dataclass(frozen=True, slots=True)
class Evidence:
    passage: Passage
    sentence: str
    score: float
    before: str = ""  # the statement just before it in the passage, which "this" may refer to
    context: float = 0.0  # cosine similarity to a follow-up's previous answer (0 without one)
    # The score with every question word counting the same: how closely the sentence answers
    # at all, what `retrieval.min_evidence_score` is calibrated on. `score` weighs the words
    # that tell these candidates apart more, to choose among them (see `keyword_weights`).
    match: float = 0.0


def rank_evidence(
    question: str,
    passages: Sequence[Passage],
    embedder: Embedder,
    *,
    keyword_weight: float = 1.5,
    number_bonus: float = NUMBER_BONUS,
    embed_sentences: Callable[[Sequence[str]], Vectors] | None = None,
    context: str = "",
    context_weight: float = 0.0,
    unmatchable: Set[str] = frozenset(),
) -> list[Evidence]:
    """Every statement (rag.statements) of the passages, best first (distinct ones only,
    figure labels left out), each with the statement before it. Score: cosine similarity to
    the question + keyword overlap (each question word weighted by `keyword_weights`; `match`
    has the unweighted overlap), plus `number_bonus` for a sentence stating a number when
    the question asks for a quantity, plus `context_weight` times the cosine similarity to
    `context` (a follow-up's previous answer: the follow-up continues where it left off), which
    each sentence also carries on its own (rag.compose keeps what is asked now in view).
    `embed_sentences` (default: the embedder's document vectors) may remember vectors between
    questions. `unmatchable` are question words (as `content_words` gives them) that the
    collection never uses: the asker's wording ("our sloppy certs"), which no sentence can
    hold, so `match` counts the share of the other words (the ranking score still counts
    every word: measured, leaving them out of it too moved which sentences join the lead)."""
    candidates: list[tuple[Passage, str, str]] = []
    seen: set[str] = set()
    for passage in passages:
        previous = ""
        for sentence in split_statements(passage.text, MAX_SENTENCE_WORDS):
            before, previous = previous, sentence
            if len(sentence.split()) < MIN_SENTENCE_WORDS or sentence in seen:
                continue
            if prose_ratio(sentence) < MIN_PROSE_RATIO:
                continue  # figure labels, not a statement
            seen.add(sentence)
            candidates.append((passage, sentence, before))
    if not candidates:
        return []
    query = embedder.embed_query(question)
    vectors = (embed_sentences or embedder.embed_documents)([s for _, s, _ in candidates])
    similarities = vectors @ query
    to_context = (vectors @ embedder.embed_query(context) if context
                  else np.zeros(len(candidates), dtype=np.float32))
    question_words = content_words(question)
    matchable = question_words - unmatchable  # what `match` (the abstention scale) counts
    wants_number = asks_for_a_number(question)
    sentence_words = [content_words(sentence) | compound_words(question, sentence)
                      for _, sentence, _ in candidates]
    weights = keyword_weights(question_words, sentence_words)
    ranked = []
    for (passage, sentence, before), words, similarity, closeness in zip(
            candidates, sentence_words, np.asarray(similarities), np.asarray(to_context),
            strict=True):
        shared = question_words & words
        base = float(similarity) + context_weight * float(closeness)
        if wants_number and states_a_number(sentence):
            base += number_bonus
        match = base + keyword_weight * (len(shared & matchable) / len(matchable) if matchable
                                         else 0.0)
        score = base + keyword_weight * weighted_share(shared, weights)
        ranked.append(Evidence(passage, sentence, score, before, float(closeness), match))
    ranked = _merge_fragments(ranked)
    ranked.sort(key=lambda e: e.score, reverse=True)
    return ranked


def keyword_weights(
    question_words: set[str], sentence_words: Sequence[set[str]]
) -> dict[str, float]:
    """Each question word's weight in the keyword overlap that ranks these candidates: its
    inverse frequency among them, log((n + 1) / (n_with_word + 1)). The topic's words are in
    nearly every sentence of the passages found for it ("the housekeeping SPI"), so they weigh
    next to nothing when choosing among those sentences; the words few of them share ("normally")
    say which one answers. Measured on both dev sets and both follow-up sets: precision and key
    facts up or unchanged on each (README, Quality)."""
    n = len(sentence_words)
    return {word: math.log((n + 1) / (sum(1 for words in sentence_words if word in words) + 1))
            for word in question_words}


def weighted_share(shared: set[str], weights: dict[str, float]) -> float:
    """The weighted share of the question's words that a sentence contains (0 when no word
    tells the candidates apart)."""
    total = sum(weights.values())
    return sum(weights[word] for word in shared) / total if total > 0 else 0.0


def _merge_fragments(ranked: list[Evidence]) -> list[Evidence]:
    """A sentence that is part of another candidate is dropped, and the whole sentence scores
    at least as well as its part did: a chunk that starts inside a sentence holds its tail
    ("of the PLIC core and will be serviced..."), which would otherwise be quoted beside the
    whole sentence from the neighbouring chunk, or instead of it."""
    texts = [normalize_for_match(item.sentence) for item in ranked]
    best = [item.score for item in ranked]
    match = [item.match for item in ranked]
    fragment = [False] * len(ranked)
    for index, text in enumerate(texts):
        for other, whole in enumerate(texts):
            if len(whole) > len(text) and text in whole:
                fragment[index] = True
                best[other] = max(best[other], ranked[index].score)
                match[other] = max(match[other], ranked[index].match)
    return [replace(item, score=best[index], match=match[index])
            for index, item in enumerate(ranked) if not fragment[index]]


_QUANTITY_QUESTION = re.compile(
    r"\bhow (?:many|much|long|fast|often|large|big|old|accurate|accurately)\b"
    r"|\bwhat (?:percentage|percent|proportion|fraction|number|share|accuracy|rate|size)\b"
    r"|\bnumber of\b",
    re.IGNORECASE,
)
_NOT_A_QUANTITY = re.compile(
    r"\[[^\]]*\]"  # citation markers [12], [3, 4]
    r"|\(\d+(?:[,–-]\s*\d+)*\)"  # numbered citations (30)
    r"|\b(?:19|20)\d\d\b"  # years
    r"|\b\d+:\d+\b"  # running heads ("39:5") and clock times
    r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}\b"  # dates
    r"|\b(?:fig(?:ure)?s?|tables?|sections?|eq(?:uation)?s?|steps?|appendix|chapter)\.?\s*"
    r"[a-z]?\d+(?:\.\d+)*"  # references to parts of the document
    r"|\b[a-z]+-?\d[\w.]*"  # names with digits: COVID-19, GPT-3.5, S6, RQ3
    r"|^\s*\d+(?:\.\d+)*\s",  # a section number opening the sentence
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")


def asks_for_a_number(question: str) -> bool:
    """Whether the question asks for a quantity (how many, how long, what percentage...)."""
    return bool(_QUANTITY_QUESTION.search(question))


def states_a_number(sentence: str) -> bool:
    """Whether the sentence states a quantity: a digit outside citation markers, years, dates,
    running heads, references to figures or sections, and names like COVID-19."""
    return bool(_DIGIT.search(_NOT_A_QUANTITY.sub(" ", sentence)))


def prose_ratio(sentence: str) -> float:
    """The share of a sentence's words that are function words: about 0.4 in prose, near 0 in
    figure labels and table cells that text extraction strings together."""
    words = [w.strip(".,;:()[]\"'").lower() for w in sentence.split()]
    words = [w for w in words if w]
    return sum(1 for w in words if w in FUNCTION_WORDS) / len(words) if words else 0.0


def covers(answer: str, sentence: str, threshold: float = 0.6) -> bool:
    """Whether the answer already says most of what the sentence says (content-word overlap)."""
    wanted = content_words(sentence)
    return bool(wanted) and len(wanted & content_words(answer)) / len(wanted) >= threshold
