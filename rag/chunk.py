"""Page-aware chunking: every chunk lies on one page, so its citation page is exact.

Chunks are packed from whole sentences up to a target length in words, with a few words of
overlap carried from the previous chunk of the same page so a fact split across a boundary is
still found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rag.parse import PageText

# A sentence ends at . ! ? followed by space and an upper-case letter, digit, bracket or quote.
# Abbreviations such as "et al." and "e.g." are not ends when a lower-case word follows.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[A-Z0-9\[(\"'])")
_PARAGRAPH = re.compile(r"\n{2,}")


@dataclass(frozen=True, slots=True)
class Chunk:
    page: int
    ordinal: int  # position of the chunk in its document
    text: str
    from_image: bool = False  # read from the page's image or a figure (OCR), not its text layer


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences (paragraph breaks always end a sentence)."""
    sentences: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = sentence.strip()
            if sentence:
                sentences.append(sentence)
    return sentences


def _pieces(sentences: Iterable[str], max_words: int) -> Iterator[list[str]]:
    """Yield each sentence as a word list, cutting over-long ones (tables, lists) into parts."""
    for sentence in sentences:
        words = sentence.split()
        for start in range(0, len(words), max_words):
            yield words[start : start + max_words]


def chunk_page(page: PageText, target_words: int, overlap_words: int) -> list[str]:
    """Pack one page's text-layer sentences into chunks of about `target_words` words."""
    if not page.has_text:
        return []
    return chunk_text(page.text, target_words, overlap_words)


def chunk_text(text: str, target_words: int, overlap_words: int) -> list[str]:
    """Pack sentences into chunks of about `target_words` words."""
    overlap_words = min(overlap_words, target_words // 2)
    chunks: list[list[str]] = []
    current: list[str] = []
    fresh = 0  # words in `current` that were not carried over as overlap
    for words in _pieces(split_sentences(text), target_words):
        if current and fresh and len(current) + len(words) > target_words:
            chunks.append(current)
            current = current[-overlap_words:] if overlap_words else []
            fresh = 0
        current = current + words
        fresh += len(words)
    if current and fresh:
        # A short tail is merged into the previous chunk rather than standing alone.
        if chunks and fresh < target_words // 3:
            chunks[-1] = chunks[-1] + current[len(current) - fresh :]
        else:
            chunks.append(current)
    return [" ".join(words) for words in chunks]


def chunk_document(pages: Iterable[PageText], target_words: int, overlap_words: int) -> list[Chunk]:
    """Chunk every page of a document, numbering chunks in reading order. Text read from a
    page's images is chunked on its own, after the text layer, so its chunks are marked."""
    result: list[Chunk] = []
    for page in pages:
        for text in chunk_page(page, target_words, overlap_words):
            result.append(Chunk(page=page.number, ordinal=len(result), text=text))
        for text in chunk_text(page.image_text, target_words, overlap_words):
            result.append(
                Chunk(page=page.number, ordinal=len(result), text=text, from_image=True)
            )
    return result
