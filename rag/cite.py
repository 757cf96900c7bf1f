"""Grounding: tie each answer sentence to the passage that supports it, with a verified quote.

A sentence is supported when enough of its content words appear in one retrieved passage. Its
citation is that passage's page, with the passage sentence that overlaps it most as the quote;
the quote is checked against the page's stored text before it is shown. Sentences no passage
supports are dropped, so the bot does not pass off the model's inventions as the documents'.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rag.chunk import split_sentences
from rag.normalize import FUNCTION_WORDS, normalize_for_match
from rag.types import Citation, Passage

_WORD = re.compile(r"[a-z0-9][a-z0-9.%-]*[a-z0-9%]|[a-z0-9]")
_FUNCTION_WORDS = FUNCTION_WORDS | frozenset(
    # words that say nothing about a claim's content
    [
        "also",
        "answer",
        "based",
        "being",
        "he",
        "her",
        "his",
        "passage",
        "passages",
        "question",
        "she",
        "use",
        "used",
        "using",
    ]
)
_IDK = re.compile(
    r"\bi (?:do not|don't|dont) know\b"
    r"|\b(?:passages?|documents?|text|context) (?:do|does|did) ?(?:not|n't) "
    r"(?:contain|mention|say|provide|include|specify|state)"
    r"|\bnot (?:mentioned|provided|stated|specified|included) in the "
    r"(?:passages?|documents?|text|context)"
    r"|\bno information (?:about|on)",
    re.IGNORECASE,
)
QUOTE_WORDS = 25


def stem(word: str) -> str:
    """A light suffix stripper, so "bounces", "bouncing" and "bounced" compare equal."""
    if word.endswith("ly") and len(word) >= 6:
        word = word[:-2]  # "normally" -> "normal", "weekly" -> "week"
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) - len(suffix) >= 3 and word.endswith(suffix) and not word.endswith("ss"):
            word = word[: -len(suffix)]
            doubled = len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls"
            if suffix in ("ing", "ed") and doubled:
                word = word[:-1]  # "hitting" -> "hit"
            break
    return word.rstrip("e") if len(word) > 4 else word


def content_words(text: str) -> set[str]:
    """Lower-case content words, lightly stemmed, for overlap tests."""
    words = set()
    for word in _WORD.findall(normalize_for_match(text)):
        if word in _FUNCTION_WORDS or len(word) < 2:
            continue
        words.add(stem(word) if word.isalpha() else word)
    return words


def compound_words(question: str, text: str) -> set[str]:
    """The question's content words (as `content_words` gives them) that `text` writes joined
    to their neighbour ("key size": "keysize") or, joined in the question, as two words
    ("lockfile": "lock file"): manuals write compounds both ways, and text extraction drops
    spaces, so the plain overlap would miss the word the sentence is about."""
    asked = [w if w.isalpha() and w not in _FUNCTION_WORDS and len(w) >= 2 else ""
             for w in _WORD.findall(normalize_for_match(question))]  # "" keeps neighbours apart
    written = [w for w in _WORD.findall(normalize_for_match(text)) if w.isalpha()]
    single = set(written)
    joined = {first + second for first, second in itertools.pairwise(written)}
    found: set[str] = set()
    for first, second in itertools.pairwise(asked):
        if first and second and first + second in single:
            found.update((stem(first), stem(second)))
    found.update(stem(word) for word in asked if len(word) >= 5 and word in joined)
    return found


def says_it_does_not_know(answer: str) -> bool:
    """The model's own "I don't know" (in a few common phrasings)."""
    return bool(_IDK.search(answer[:400].replace("\u2019", "'").replace("\u2018", "'")))


@dataclass(frozen=True, slots=True)
class GroundedSentence:
    text: str
    citation: Citation | None  # None: no passage supports it


def _best_quote(sentence_words: set[str], passage: Passage) -> str:
    best, best_score = "", -1.0
    for candidate in split_sentences(passage.text):
        overlap = len(sentence_words & content_words(candidate))
        score = overlap - 0.001 * len(candidate)  # prefer shorter among equals
        if score > best_score:
            best, best_score = candidate, score
    words = best.split()
    if len(words) <= QUOTE_WORDS:
        return best
    # Keep the window of QUOTE_WORDS words that holds the most overlap.
    best_start, best_hits = 0, -1
    for start in range(0, len(words) - QUOTE_WORDS + 1):
        hits = len(sentence_words & content_words(" ".join(words[start : start + QUOTE_WORDS])))
        if hits > best_hits:
            best_start, best_hits = start, hits
    return " ".join(words[best_start : best_start + QUOTE_WORDS])


def ground_sentences(
    answer: str,
    passages: Sequence[Passage],
    page_text: Callable[[str, int], str | None],
    min_support: float = 0.5,
    question: str = "",
    *,
    strict: bool = False,
) -> list[GroundedSentence]:
    """Split the answer into sentences and cite each one that a passage supports.

    Support is measured on what a sentence adds to the question: echoing the question's words
    proves nothing, so "ingesting the same file twice can cause a crash" needs "cause" and
    "crash" from a passage, not "ingest", "same", "file", "twice". With `strict`, a sentence is
    cited only by a passage that says all of it (`strictly_supported`).
    """
    passage_words = [content_words(p.text) for p in passages]
    asked = content_words(question)
    grounded: list[GroundedSentence] = []
    for sentence in split_sentences(answer):
        words = content_words(sentence)
        if not words:
            grounded.append(GroundedSentence(sentence, None))
            continue
        claimed = (words - asked) or words
        best_index, best_support = -1, 0.0
        for index, pwords in enumerate(passage_words):
            if strict and not strictly_supported(sentence, passages[index].text):
                continue
            support = len(claimed & pwords) / len(claimed) + 0.01 * len(words & pwords)
            if support > best_support:
                best_index, best_support = index, support
        if best_index < 0 or (not strict and best_support < min_support):
            grounded.append(GroundedSentence(sentence, None))
            continue
        passage = passages[best_index]
        quote = _best_quote(words, passage)
        stored = page_text(passage.document, passage.page)
        if (
            not quote
            or stored is None
            or normalize_for_match(quote) not in normalize_for_match(stored)
        ):
            grounded.append(GroundedSentence(sentence, None))  # a quote we cannot verify is dropped
            continue
        grounded.append(GroundedSentence(sentence, Citation(passage.document, passage.page, quote)))
    return grounded


def drop_off_topic_pages(
    grounded: Sequence[GroundedSentence],
    page_relevance: Mapping[tuple[str, int], float],
    margin: float,
) -> list[GroundedSentence]:
    """Withdraw the citation of sentences grounded on a page that answers the question much
    worse than the best page does (its best evidence score more than `margin` below the best):
    such a sentence is true of the documents but about something else, and citing its page
    points the reader away from the answer."""
    if not page_relevance:
        return list(grounded)
    floor = max(page_relevance.values()) - margin
    result = []
    for item in grounded:
        citation = item.citation
        if citation is not None and page_relevance.get(
            (citation.document, citation.page), float("-inf")
        ) < floor:
            item = GroundedSentence(item.text, None)
        result.append(item)
    return result


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def numbers_in(text: str) -> set[str]:
    """The numbers a text states, thousands separators removed ("1,188" and "1188" are equal)."""
    return {n.replace(",", "") for n in _NUMBER.findall(normalize_for_match(text))}


def strictly_supported(sentence: str, source: str) -> bool:
    """Whether `source` says everything `sentence` says, word for word: every content word (up
    to light stemming) and every number of the sentence occurs in it. The check a generated
    sentence must pass to be shown; a document's own sentence passes it against its page."""
    text = _CITATION_MARK.sub(" ", sentence)
    words = content_words(text)
    if not words:
        return False
    return words <= content_words(source) and numbers_in(text) <= numbers_in(source)


_CITATION_MARK = re.compile(r"\[[^\[\]]+? p\.\d+[^\]]*\]")
