"""Running headers and footers, found where an answer shows a page, not at ingest.

"EduMIPS64 Documentation, Release 0.5.3" or "Transportation of Personal Property NAVSUP P-490,
REV 6 1-3" opens every page of its document; once the page's lines are joined, it glues itself to
the page's first sentence, and a quote of that sentence shows it. Stripping such lines at parse
time was measured and dropped (it moved chunk boundaries, and key facts fell on both dev sets),
so the index keeps them and only what an answer shows loses them.

A page's running header is the words it opens with that at least two of its neighbouring pages
(two before, two after) open with too, numbers masked so "1-3" matches "1-4"; a footer likewise
at the end. A single neighbour is not enough: two pages of one section may open alike by chance.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

NEIGHBOURS = (-2, -1, 1, 2)
MIN_RUNNING_WORDS = 2  # "Page 7" or a title; one shared word is chance
_DIGITS = re.compile(r"\d+")


def _masked(words: Sequence[str]) -> list[str]:
    return [_DIGITS.sub("#", word) for word in words]


def _shared(words: list[str], others: list[list[str]]) -> int:
    """How many leading words `words` shares with at least two of `others`."""
    lengths = []
    for other in others:
        length = 0
        for mine, theirs in zip(words, other, strict=False):
            if mine != theirs:
                break
            length += 1
        lengths.append(length)
    lengths.sort(reverse=True)
    shared = lengths[1] if len(lengths) >= 2 else 0
    return shared if shared >= MIN_RUNNING_WORDS else 0


def running_edges(page: str, neighbours: Sequence[str]) -> tuple[int, int]:
    """How many words at the start and at the end of `page` are running text."""
    words = _masked(page.split())
    others = [_masked(text.split()) for text in neighbours]
    head = _shared(words, others)
    tail = _shared(words[::-1], [other[::-1] for other in others])
    if head + tail >= len(words):
        return 0, 0  # a page of nothing else (a blank page's header) is left alone
    return head, tail


class RunningText:
    """Strips a page's running header and footer from the statements quoted from it; pages
    are read through `page_text` once each."""

    def __init__(self, page_text: Callable[[str, int], str | None]) -> None:
        self._page_text = page_text
        self._edges: dict[tuple[str, int], tuple[list[str], list[str]]] = {}

    def strip(self, statement: str, document: str, page: int) -> str:
        """`statement` (text of that page) without the running words it opens or closes with."""
        head, tail = self._edges_of(document, page)
        words = statement.split()
        if head and words[: len(head)] == head:
            words = words[len(head):]
        if tail and len(words) > len(tail) and words[-len(tail):] == tail:
            words = words[: -len(tail)]
        return " ".join(words)

    def _edges_of(self, document: str, page: int) -> tuple[list[str], list[str]]:
        key = (document, page)
        if key not in self._edges:
            text = self._page_text(document, page) or ""
            neighbours = [t for offset in NEIGHBOURS
                          if page + offset >= 1
                          and (t := self._page_text(document, page + offset))]
            head, tail = running_edges(text, neighbours)
            words = text.split()
            self._edges[key] = (words[:head], words[len(words) - tail:] if tail else [])
        return self._edges[key]
