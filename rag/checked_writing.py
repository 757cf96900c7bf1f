"""What the model writes, as the user may see it: only sentences a passage says all of.

The strict check (rag.cite) runs on each sentence as soon as the model finishes it, not only at
the end, so a draft on Discord or Slack never shows a sentence the final answer would drop. In
hybrid mode the documents' own sentences (rag.compose) are the first draft, before the model
has written a word; the model's checked sentences then lead, and the documents' sentences they
do not already say follow, as in the final answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from rag.chunk import split_sentences
from rag.cite import drop_off_topic_pages, ground_sentences, says_it_does_not_know
from rag.compose import Part, render_parts
from rag.extract import covers
from rag.prompt import sanitize
from rag.types import Passage

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


class CheckedWriting:
    """The model's sentences that pass the strict check, cited, for every draft and the end."""

    def __init__(
        self,
        question: str,
        passages: Sequence[Passage],
        page_text: Callable[[str, int], str | None],
        relevance: Mapping[tuple[str, int], float],
        margin: float,
        documents_parts: Sequence[Part] = (),
    ) -> None:
        self._question = question
        self._passages = passages
        self._page_text = page_text
        self._relevance = relevance
        self._margin = margin
        self._documents_parts = list(documents_parts)  # hybrid: what the documents say
        self._checked: dict[str, Part | None] = {}  # each sentence checked once
        self._complete = 0  # complete sentences in the last draft
        self.dropped = 0

    def first_draft(self) -> str:
        """Before the model writes: the documents' sentences (hybrid), else nothing."""
        return render_parts(self._question, self._documents_parts)

    def draft(self, partial: str) -> str | None:
        """The draft for the model's text so far, or None when no sentence was finished since
        the last one (the last sentence may still be growing, so it is not checked yet)."""
        sentences = split_sentences(as_sentences(sanitize(partial)))[:-1]
        if len(sentences) == self._complete:
            return None
        self._complete = len(sentences)
        return render_parts(self._question, self.parts(list(dict.fromkeys(sentences))))

    def final(self, text: str, hit_limit: bool) -> tuple[list[Part], bool]:
        """The answer's parts from the model's whole text, and whether it was cut short."""
        complete, shortened = complete_sentences(as_sentences(sanitize(text)), hit_limit)
        if not complete or says_it_does_not_know(complete):
            return self.parts([]), shortened
        sentences = split_sentences(complete)
        self.dropped = sum(1 for sentence in sentences if self._check(sentence) is None)
        if self.dropped:
            shortened = False  # what was cut off is not what is shown
        return self.parts(sentences), shortened

    def parts(self, sentences: Sequence[str]) -> list[Part]:
        """The checked sentences among `sentences`, then the documents' parts they do not say."""
        written = [part for sentence in sentences if (part := self._check(sentence)) is not None]
        said = " ".join(p.text for p in written)
        return written + [p for p in self._documents_parts if not covers(said, p.text)]

    def _check(self, sentence: str) -> Part | None:
        if sentence not in self._checked:
            grounded = ground_sentences(sentence, self._passages, self._page_text, strict=True)
            grounded = drop_off_topic_pages(grounded, self._relevance, self._margin)
            cited = [g for g in grounded if g.citation is not None]
            self._checked[sentence] = (
                Part(sentence, cited[0].citation)
                if len(cited) == len(grounded) == 1 and cited[0].citation is not None
                else None
            )
        return self._checked[sentence]
