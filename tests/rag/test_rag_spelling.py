"""Misspelt question words are read as the words meant, against the packaged English list;
names, the documents' own words and parts of identifiers are left as they are."""

from __future__ import annotations

import pytest

from rag.english import english_words
from rag.spelling import Spelling


@pytest.fixture(scope="module")
def spelling() -> Spelling:
    words = english_words()
    return Spelling(lambda: words)


def nowhere(word: str) -> bool:
    return False


def test_a_letter_left_out_swapped_or_doubled_is_a_typo(spelling: Spelling) -> None:
    assert spelling.corrections("is it requird to sign?", nowhere) == {"requird": "required"}
    assert spelling.correct("what is diffrent between them", nowhere) == (
        "what is different between them")
    assert spelling.correct("the recieve buffer", nowhere) == "the receive buffer"
    assert spelling.correct("why dont we", nowhere) == "why don't we"


def test_the_word_the_collection_uses_wins_over_a_more_frequent_one(
    spelling: Spelling,
) -> None:
    assert spelling.correct("the globbs weight", nowhere) == "the globes weight"
    assert spelling.correct("the globbs weight", {"globs"}.__contains__) == "the globs weight"


def test_names_and_the_documents_own_words_are_left_alone(spelling: Spelling) -> None:
    # A word with a letter added or changed at its end is more often a name than a typo.
    assert spelling.corrections("does it ship systemd units or sshd configs?", nowhere) == {}
    # Written as a name, used by the collection, or part of an identifier or a compound.
    assert spelling.corrections("what does Requird say?", nowhere) == {}
    assert spelling.corrections("what does requird say?", {"requird"}.__contains__) == {}
    assert spelling.corrections("set requird_fields and x-requird", nowhere) == {}
    # Short words are too often one edit from some English word.
    assert spelling.corrections("how do i bake the defs in", nowhere) == {}
