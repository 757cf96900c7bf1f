"""The parts of a question that asks two things at once.

"What happens if my program never calls SYSCALL 0? and are HALT / TRAP still ok to use?" is two
questions, often answered on two pages. The answer is built for the whole question (rag.compose),
which finds the page that answers it best; each later part is then also answered on its own, so
what it asks is not lost when another page holds it.
"""

from __future__ import annotations

import re

from rag.cite import content_words

_SENTENCE_END = re.compile(r"(?<=[?!.])\s+")
# ", and what was it before?" / " and how long should we ...": a second question joined on.
_JOINED_QUESTION = re.compile(
    r",?\s+and\s+(?=(?:what|which|who|when|where|why|how|is|are|does|do|did|can|could|should|"
    r"would|will|was|were)\b)",
    re.IGNORECASE,
)
MIN_PART_WORDS = 3  # content words a part needs to be asked on its own (not "if not why not")


# A part that points back ("does it go up with dependents?") asks about the first part's subject.
_POINTS_BACK = re.compile(r"\b(?:it|its|they|them|their|this|that|these|those|there)\b",
                          re.IGNORECASE)


def question_parts(question: str) -> list[str]:
    """The question's parts in order (the question itself when it asks one thing): its
    sentences, and within one, a second question joined on with "and". A later part that
    points back ("it", "they") carries the first part with it, which says what it is."""
    pieces = [piece.strip() for sentence in _SENTENCE_END.split(question.strip())
              for piece in _JOINED_QUESTION.split(sentence)]
    parts = [piece for piece in pieces if len(content_words(piece)) >= MIN_PART_WORDS]
    if len(parts) < 2:
        return [question]
    return [parts[0], *(f"{part} ({parts[0]})" if _POINTS_BACK.search(part) else part
                        for part in parts[1:])]
