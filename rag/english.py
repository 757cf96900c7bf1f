"""Everyday English words, so a rare but ordinary word in a question is not taken for a name.

The abstention rules (rag/abstain.py) decline a question that names something the collection
never mentions. Their first filter was the embedder's tokenizer vocabulary, about 20,000 whole
words: ordinary words outside it ("gnarly", "bake", "regenerate", "linker") read as unknown
names, and questions worded that way were declined although the documents answer them. This
list is the English frequency dictionary that the `pyspellchecker` package ships (about 160,000
words, from subtitles and books); acronyms and product names ("GDPR", "MTurk", "FedRAMP") are
not in it. It is read from the package's data file, without importing the package.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path

_PACKAGE = "spellchecker"
_RESOURCE = ("resources", "en.json.gz")


def english_words_file() -> Path:
    """The packaged word list, found without importing its package."""
    spec = importlib.util.find_spec(_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder).joinpath(*_RESOURCE)
        if path.is_file():
            return path
    raise RuntimeError(
        "the English word list is missing: install the package pyspellchecker "
        "(pip install pyspellchecker), which ships it"
    )


def english_words(path: Path | None = None) -> Mapping[str, int]:
    """Every word of the list, in lower case, with how often it occurs (rag.spelling picks
    the more frequent of two words a typo may stand for)."""
    with gzip.open(path or english_words_file(), "rt", encoding="utf-8") as handle:
        counts: dict[str, int] = json.load(handle)
    words: dict[str, int] = {}
    for word, count in counts.items():
        lower = word.lower()
        words[lower] = max(words.get(lower, 0), int(count))
    return words


__all__ = ["english_words", "english_words_file"]
