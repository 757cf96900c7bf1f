"""Abstention rules: a question that names something the documents never mention is not answered.

A small model asked about "the Spanish edition" of a document that has none will happily invent
one; no retrieval score catches it, because the rest of the question matches the documents well.
So before any answer is built, the question's names are looked up: in the collection (a word the
collection never uses), and in the documents the passages come from (a name those documents,
the only ones able to answer, never mention). No model call is involved.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Sequence
from typing import Protocol

from rag.embed import Embedder
from rag.normalize import FUNCTION_WORDS
from rag.store import question_terms
from rag.types import Passage


class TermLookup(Protocol):
    """What the rules need from the document store: does a word occur in these documents?"""

    def term_in_collection(
        self,
        collection: str,
        term: str,
        documents: Sequence[str] | None = None,
        *,
        prefix: bool = False,
    ) -> bool: ...


class AbstentionRules:
    """The name checks over one store; `vocabulary` is the embedder's word list (loaded lazily,
    so common words are skipped without a database lookup)."""

    def __init__(
        self,
        store: TermLookup,
        vocabulary: Callable[[], frozenset[str]],
        english: Callable[[], Container[str]] = frozenset,
    ) -> None:
        self._store = store
        self._vocabulary = vocabulary
        self._english = english  # everyday words (rag.english), read only when first needed

    def unknown_terms(
        self, question: str, collection: str, passages: Sequence[Passage] = ()
    ) -> list[str]:
        """Names in the question (not common words) that no chunk of the collection contains."""
        vocabulary = self._vocabulary()
        unknown = []
        for term in question_terms(question):
            if "-" in term:  # "high-resolution" is wording; "git-buildpackage" a name
                names = self._name_parts(term, vocabulary)
                if names and not self.mentions(collection, term, None, passages) and not all(
                        self.mentions(collection, name, None, passages) for name in names):
                    unknown.append(term)
                continue
            if "." in term or term.isdigit() or len(term) < 3:
                continue  # file names, versions and numbers are matched loosely; don't judge them
            if term in _CONTRACTIONS or any(form in vocabulary for form in word_forms(term)):
                continue
            if _common_compound(term, question, vocabulary):
                continue  # "cutoff" where the documents say "threshold" is no unknown name
            if _in_lower_case(term, question) and any(
                form in self._english() for form in word_forms(term)
            ):
                continue  # "gnarly", "regenerate": the asker's wording, not a name
            if not self.mentions(collection, term, None, passages):
                unknown.append(term)
        return unknown

    def _name_parts(self, term: str, vocabulary: frozenset[str]) -> list[str]:
        """The parts of a hyphenated term that are names ("buildpackage" of "git-buildpackage",
        "houyi" of "pre-HOUYI"): four letters or more, neither a word of the embedder's
        vocabulary nor an everyday English word. The term is mentioned if they all are."""
        return [part for part in term.split("-") if len(part) >= 4 and not any(
            form in vocabulary or form in self._english() for form in word_forms(part))]

    def mentions(
        self, collection: str, term: str, documents: Sequence[str] | None,
        passages: Sequence[Passage],
    ) -> bool:
        """Whether the documents mention `term`: as a word, as another form of it ("binaries",
        "binary"), as a word of a document's file name (four letters or more: a part of one,
        "tasn1" in "libtasn1.pdf"), as the initials of words in the passages found ("NOSA":
        NASA Open Source Agreement), or, four letters or more, as a part of a word in them
        ("tasn1" for "Libtasn1": a name said short) or their words run together ("alphazero"
        for "Alpha Zero")."""
        if self._store.term_in_collection(collection, term, documents):
            return True
        root = word_root(term)
        if len(root) >= 4 and self._store.term_in_collection(
            collection, root, documents, prefix=True
        ):
            return True
        names = documents if documents is not None else [p.document for p in passages]
        titles = [" ".join(re.split(r"[^a-z0-9]+", name.lower())) for name in names]
        if any(term in (title.split() if len(term) < 4 else title)
               or spells_initials(term, title, written_as_names=False) for title in titles):
            return True
        joined = _SPACES.sub("", term)
        if len(term) >= 4 and any(term in p.text.lower() or joined in _SPACES.sub("", p.text.lower())
                                  for p in passages):
            return True  # also a name written in parts: "AlphaZero" for "Alpha Zero"
        return any(spells_initials(term, p.text) for p in passages)

    def names_missing_from(
        self, question: str, passages: Sequence[Passage], collection: str
    ) -> list[str]:
        """Names in the question that none of the documents the passages come from mentions.

        A name (a capitalised word inside the question, like "Spanish" or "Telegram") that the
        only documents able to answer never mention means the question is about something
        they don't cover, even when the rest of it matches them closely.
        """
        documents = sorted({p.document for p in passages})
        if not documents:
            return []
        missing = []
        for name in question_names(question):
            for term in question_terms(name):
                if "-" in term or "." in term or term.isdigit() or len(term) < 3:
                    continue
                if term in _CONTRACTIONS or term in missing:
                    continue
                if not self.mentions(collection, term, documents, passages):
                    missing.append(term)
        return missing


_SPACES = re.compile(r"[\s-]+")


def _in_lower_case(term: str, question: str) -> bool:
    """Whether the question writes `term` in lower case only: "Cutoff" or "MTurk" in the
    middle of a question is written as a name, whatever the dictionary says."""
    written = [w for w in re.findall(r"[\w'’-]+", question) if w.lower().startswith(term)]
    return bool(written) and not any(ch.isupper() for w in written for ch in w)


def _common_compound(term: str, question: str, vocabulary: frozenset[str]) -> bool:
    """Whether `term` is written in lower case in the question and is two common words run
    together ("cutoff", "offsite"): an everyday compound, not a name. "FedRAMP" is a name."""
    if not _in_lower_case(term, question):
        return False
    root = word_root(term)
    return any(
        root[:cut] in vocabulary and any(form in vocabulary for form in word_forms(root[cut:]))
        for cut in range(3, len(root) - 2)
    )


def vocabulary_of(embedder: Embedder) -> frozenset[str]:
    """The embedder's tokenizer vocabulary, or nothing when it has none to offer."""
    vocabulary = getattr(embedder, "vocabulary", None)
    return vocabulary() if callable(vocabulary) else frozenset()


def word_forms(word: str) -> list[str]:
    """The word and the singular or base forms it may inflect ("binaries" -> "binary",
    "greyed" -> "grey"), to look up in a vocabulary."""
    forms = [word, word_root(word)]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith(("es", "ed")):
        forms.append(word[:-1])  # "notes" -> "note", "stored" -> "store"
    return forms


def word_root(word: str) -> str:
    """A crude root shared by a word's inflections: "binaries" -> "binar", "cutoffs" ->
    "cutoff", "greyed" -> "grey" (a prefix to search for, not a dictionary form)."""
    for suffix in ("ies", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def spells_initials(term: str, text: str, *, written_as_names: bool = True) -> bool:
    """Whether consecutive words of `text` start with the letters of `term`, with or without
    its function words ("NOSA": NASA Open Source Agreement; "DoD": Department of Defense), so
    an acronym counts as mentioned where its expansion is written out. An expansion is written
    as a name, so with `written_as_names` each letter comes from a capitalised word: "graph
    data privacy risks" does not spell GDPR (file names, already lower case, pass False)."""
    if not 2 <= len(term) <= 8 or not term.isalpha():
        return False
    term = term.lower()
    every = re.findall(r"[A-Za-z][A-Za-z'-]*", text)
    content = [w for w in every if w.lower() not in FUNCTION_WORDS]
    n = len(term)

    def spelled(words: list[str]) -> bool:
        return "".join(w[0].lower() for w in words) == term and (
            not written_as_names
            or all(w[0].isupper() or w.lower() in FUNCTION_WORDS for w in words)
        )

    return any(
        spelled(words[i : i + n])
        for words in (every, content)
        for i in range(len(words) - n + 1)
    )


def question_names(question: str) -> list[str]:
    """Capitalised words that do not open a sentence (and are not "I"): the names a question
    uses, such as products, places, languages, people and acronyms."""
    names = []
    for sentence in re.split(r"(?<=[.!?])\s+", question.strip()):
        words = re.findall(r"[^\W_][\w'’.-]*", sentence)
        for word in (w.rstrip(".'’-") for w in words[1:]):
            if word != "I" and any(ch.isupper() for ch in word):
                names.append(word)
    return names


_CONTRACTIONS = frozenset(
    [
        "doesn",
        "isn",
        "wasn",
        "aren",
        "weren",
        "didn",
        "don",
        "hasn",
        "haven",
        "hadn",
        "won",
        "wouldn",
        "shouldn",
        "couldn",
    ]
)
