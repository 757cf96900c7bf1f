"""Text clean-up applied to every page at ingest, so search and quotes see clean words.

PDF text layers are noisy: ligatures (ﬁ), words hyphenated at line ends, hard line breaks inside
paragraphs, and invisible characters (zero-width, bidi overrides) that can hide text from readers.
"""

from __future__ import annotations

import re
import unicodedata

# Zero-width and bidirectional control characters, the soft hyphen and the BOM: invisible to a
# reader, so a document could use them to hide instructions or to spoof text. Strip them all.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
# Private-use code points: symbol-font bullets and arrows that extract as meaningless glyphs.
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
# Other control characters except newline and tab.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A word broken at a line end: "inter-\nnational". Rejoin only when the continuation is lower case,
# so "COVID-\n19" and "Fig-\nA" stay as they are.
_HYPHENATED = re.compile(r"(\w)-[ \t]*\n[ \t]*([a-z])")
# A hyphen that belongs to the word ("COVID-\n19"): keep it and join without a space.
_KEPT_HYPHEN = re.compile(r"(\w)-[ \t]*\n[ \t]*(?=[A-Z0-9])")
# A soft hyphen at a line end marks a broken word: rejoin it before invisible characters go.
_SOFT_HYPHEN_BREAK = re.compile(r"\u00ad[ \t]*\n[ \t]*")
# Form feed and vertical tab separate words: make them spaces before control characters go.
_BREAKING_CONTROLS = re.compile(r"[\f\v]")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_LINE_BREAKS = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{2,}")


# Chat-template control tokens (<|im_start|>, <|eot_id|>, [INST], <s>...) and the prompt's own
# passage tags must never come from a document: removed at ingest (so quotes of the stored text
# can't carry them into answers) and again when a prompt is built.
_CHAT_MARKUP = re.compile(
    r"<\|[^|>]{0,40}\|>|\[/?INST\]|</?s>|</?\s*passage[^>]*>|<<\s*/?SYS\s*>>", re.IGNORECASE
)


def strip_chat_markup(text: str) -> str:
    return _CHAT_MARKUP.sub(" ", text)


def strip_invisible(text: str) -> str:
    """Remove zero-width/bidi/control characters (also used on names and questions)."""
    return _CONTROL.sub("", _INVISIBLE.sub("", text))


def normalize_page_text(raw: str) -> str:
    """Return the page text as clean single-spaced prose with paragraphs kept as blank lines."""
    text = unicodedata.normalize("NFKC", raw)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SOFT_HYPHEN_BREAK.sub("", _BREAKING_CONTROLS.sub(" ", text))
    text = strip_chat_markup(strip_invisible(text))
    text = _PRIVATE_USE.sub(" ", text)
    text = _HYPHENATED.sub(r"\1\2", text)
    text = _KEPT_HYPHEN.sub(r"\1-", text)
    text = _SPACES.sub(" ", text)
    text = _LINE_BREAKS.sub("\n", text)
    paragraphs = _BLANK_LINES.split(text)
    joined = "\n\n".join(p.replace("\n", " ").strip() for p in paragraphs)
    return _SPACES.sub(" ", joined).strip()


_MATCH_SEPARATORS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def normalize_for_match(text: str) -> str:
    """Canonical form for comparing strings: NFKC, lower case, single spaces, no thousands commas."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _MATCH_SEPARATORS.sub("", text)
    return " ".join(text.split())


# Words that carry no topic: ignored when matching questions, answers and passages by words.
FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "document",
        "documents",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "so",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
    ]
)
