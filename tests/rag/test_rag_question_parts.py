"""Two-part questions: each later part is asked on its own, carrying what it points back to."""

from __future__ import annotations

import pytest

from rag.question_parts import question_parts


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        ("Which port does the relay listen on? and can the idle timeout be changed?",
         ["Which port does the relay listen on?", "and can the idle timeout be changed?"]),
        ("how many ferries sail each winter, and how long does the crossing take?",
         ["how many ferries sail each winter", "how long does the crossing take?"]),
        # A part that points back carries the first part, which says what "it" is.
        ("what is the relay's default port, and was it different in older releases?",
         ["what is the relay's default port",
          "was it different in older releases? (what is the relay's default port)"]),
    ],
)
def test_a_question_asking_two_things_is_cut_into_its_parts(question: str, parts: list[str]) -> None:
    assert question_parts(question) == parts


@pytest.mark.parametrize(
    "question",
    [
        "what spending caps apply to a whole project and to each contract?",  # one question
        "is the cache rebuilt at boot? if not why not",  # too short to ask alone
        "How do bread and butter differ?",
    ],
)
def test_a_question_asking_one_thing_stays_whole(question: str) -> None:
    assert question_parts(question) == [question]
