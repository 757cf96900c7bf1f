"""Misspelt words in a question ("diffrent", "requird", "dont") read as the words meant.

Questions are typed quickly in chat. A misspelt word matches no page: keyword search misses it,
the sentences' keyword overlap misses it, and the abstention rules read it as a name the
collection never mentions, so the question was declined although the documents answer it. A
word is read as a misspelling only when everything else has failed: it is written in lower case,
it is not a word the embedder or the English list knows, the collection never uses it, and one
edit (a letter left out, added, changed, or two letters swapped) turns it into an English word.
The word chosen is one the collection uses if there is one, the most frequent in English first.

Edits of the first and the last letter are left alone, because names are built that way more
often than typos are: "systemd" and "sshd" are names, not "system" or "systems" mistyped. A
letter left out at the end ("requir") is still read as a typo.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Container, Iterator, Mapping

MIN_LENGTH = 5  # shorter words are too often one edit from some English word ("defs": "dens")
_LETTERS = string.ascii_lowercase + "'"  # "dont" -> "don't"
# Whole words only: a part of an identifier or a compound ("asn1_parser2tree", "x-generic") is
# the document's own spelling.
_WORD = re.compile(r"(?<![\w'./-])[A-Za-z][A-Za-z']*[A-Za-z](?![\w'/-]|\.\w)")


class Spelling:
    """Corrects a question's misspelt words against `english` (word -> frequency) and the
    embedder's `vocabulary`; both are read only when a question first has an unknown word."""

    def __init__(
        self,
        english: Callable[[], Mapping[str, int]],
        vocabulary: Callable[[], Container[str]] = frozenset,
    ) -> None:
        self._english = english
        self._vocabulary = vocabulary

    def corrections(self, question: str, mentioned: Callable[[str], bool]) -> dict[str, str]:
        """Each misspelt word of the question and the word it stands for. `mentioned` says
        whether the collection uses a word."""
        found: dict[str, str] = {}
        for word in _WORD.findall(question):
            if word in found or len(word) < 3 or word != word.lower():
                continue  # "Telegram", "MTurk": written as a name
            english = self._english()
            if word in english or word in self._vocabulary() or mentioned(word):
                continue
            candidates = [c for c in _one_edit(word) if c in english
                          and (len(word) >= MIN_LENGTH or "'" in c)]  # "dont": "don't"
            if not candidates:
                continue
            used = [c for c in candidates if mentioned(c)]
            found[word] = max(used or candidates, key=lambda c: (english[c], c))
        return found

    def correct(self, question: str, mentioned: Callable[[str], bool]) -> str:
        """The question with its misspelt words replaced by the words they stand for."""
        fixes = self.corrections(question, mentioned)
        if not fixes:
            return question
        return _WORD.sub(lambda m: fixes.get(m.group(0), m.group(0)), question)


def _one_edit(word: str) -> Iterator[str]:
    """Every string one edit from `word`, except edits of its first letter and of its last
    (a name is often a word with a letter changed or added there: "systemd", "systemz")."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    for left, right in splits:
        if left and len(right) > 1:
            yield left + right[1:]  # a letter too many, neither the first nor the last
        if len(right) > 1:
            yield left + right[1] + right[0] + right[2:]  # two letters swapped
        if left and len(right) > 1:
            for letter in _LETTERS:
                yield left + letter + right[1:]  # a letter changed, neither the first nor the last
        if left:
            for letter in _LETTERS:
                yield left + letter + right  # a letter that was left out, not the first


__all__ = ["Spelling"]
