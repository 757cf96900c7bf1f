"""Evidence sentences: the sentences of the retrieved passages that best answer the question.

Small local models paraphrase badly and drop key facts, so the sentences the documents
themselves use are scored (embedding similarity to the question plus keyword overlap) and used
as the answer's backbone: quoted verbatim when the model's answer is missing or unsupported, and
added after a generated answer that leaves out what the best sentence says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.chunk import split_sentences
from rag.cite import content_words
from rag.embed import Embedder
from rag.types import Passage

MIN_SENTENCE_WORDS = 5
MAX_SENTENCE_WORDS = 80


@dataclass(frozen=True, slots=True)
class Evidence:
    passage: Passage
    sentence: str
    score: float


def rank_evidence(
    question: str,
    passages: Sequence[Passage],
    embedder: Embedder,
    *,
    keyword_weight: float = 1.5,
) -> list[Evidence]:
    """Every sentence of the passages, best first (distinct sentences only)."""
    candidates: list[tuple[Passage, str]] = []
    seen: set[str] = set()
    for passage in passages:
        for sentence in split_sentences(passage.text):
            words = sentence.split()
            if len(words) < MIN_SENTENCE_WORDS or sentence in seen:
                continue
            seen.add(sentence)
            candidates.append((passage, " ".join(words[:MAX_SENTENCE_WORDS])))
    if not candidates:
        return []
    query = embedder.embed_query(question)
    vectors = embedder.embed_documents([sentence for _, sentence in candidates])
    similarities = vectors @ query
    question_words = content_words(question)
    ranked = []
    for (passage, sentence), similarity in zip(candidates, np.asarray(similarities), strict=True):
        overlap = (
            len(question_words & content_words(sentence)) / len(question_words)
            if question_words
            else 0.0
        )
        ranked.append(Evidence(passage, sentence, float(similarity) + keyword_weight * overlap))
    ranked.sort(key=lambda e: e.score, reverse=True)
    return ranked


def covers(answer: str, sentence: str, threshold: float = 0.6) -> bool:
    """Whether the answer already says most of what the sentence says (content-word overlap)."""
    wanted = content_words(sentence)
    return bool(wanted) and len(wanted & content_words(answer)) / len(wanted) >= threshold
