"""Follow-ups reach retrieval as a standalone question: the follow-up's words plus the topic of
the previous question, only when the follow-up refers back or leaves out its subject."""

from __future__ import annotations

import pytest

from rag.abstain import spells_initials, word_forms
from rag.followup import cited_documents, refers_back, standalone_question
from rag.types import Turn

PREVIOUS = Turn(
    "Which methods does the survey list for tracking players?",
    "- Kalman filters track players [survey.pdf p.12]\n- Optical flow too [survey.pdf p.14]",
)


@pytest.mark.parametrize(
    "question",
    ["which of those are used in soccer?", "why is it needed?", "and for vehicles?",
     "what about their accuracy?", "how long?"],
)
def test_referring_or_elliptical_questions_refer_back(question: str) -> None:
    assert refers_back(question)


@pytest.mark.parametrize(
    "question",
    ["How does the ferry timetable change in winter?",
     "What is the maximum weight allowance for a civilian employee move?"],
)
def test_questions_that_name_their_subject_stand_alone(question: str) -> None:
    assert not refers_back(question)
    assert standalone_question(question, [PREVIOUS]).query == question


def test_a_follow_up_borrows_the_previous_questions_topic_not_its_question_words() -> None:
    standalone = standalone_question("which of those are used in soccer?", [PREVIOUS])
    assert standalone.is_follow_up
    assert standalone.query.startswith("which of those are used in soccer?")
    assert set(standalone.borrowed) == {"methods", "survey", "tracking", "players"}
    assert "which" not in standalone.borrowed  # the question word is not the topic
    assert standalone.documents == ("survey.pdf",)


def test_a_follow_ups_context_is_what_the_previous_answer_said_without_its_page_marks() -> None:
    standalone = standalone_question("which of those are used in soccer?", [PREVIOUS])
    assert standalone.context == "- Kalman filters track players - Optical flow too"
    # A question that names its own subject, or a first question, has no context.
    assert standalone_question("How does the ferry timetable change in winter?",
                               [PREVIOUS]).context == ""
    assert standalone_question("why is it needed?", []).context == ""


@pytest.mark.parametrize("apostrophe", ["'", "’"])
def test_a_contracted_question_word_is_not_borrowed_as_topic(apostrophe: str) -> None:
    previous = Turn(f"What{apostrophe}s the deadline for a final PPM claim?", "45 days [p.pdf p.39]")
    standalone = standalone_question("how can they send it in?", [previous])
    assert set(standalone.borrowed) == {"deadline", "final", "ppm", "claim"}


def test_without_history_a_question_is_searched_as_it_is() -> None:
    assert standalone_question("why is it needed?", []).query == "why is it needed?"


def test_cited_documents_come_from_the_answers_citation_marks() -> None:
    assert cited_documents("A [b.pdf p.3]. B [a.pdf p.1, read from an image]. C [b.pdf p.9]") \
        == ("b.pdf", "a.pdf")
    assert cited_documents("no marks") == ()


def test_acronyms_count_as_mentioned_where_their_words_are_written_out() -> None:
    assert spells_initials("nosa", "the NASA Open Source Agreement version 1.3")
    assert spells_initials("dod", "the Department of Defense")  # "of" is skipped
    assert not spells_initials("nosa", "NASA software is open to everyone")
    assert not spells_initials("x1", "X ray")
    # an expansion is written as a name: lower-case words that happen to start with the letters
    # spell nothing, except in a file name (lower case already)
    assert spells_initials("gdpr", "the General Data Protection Regulation applies")
    assert not spells_initials("gdpr", "we study graph data privacy risks in depth")
    assert spells_initials("gdpr", "general data protection regulation", written_as_names=False)


def test_word_forms_cover_plurals_and_past_tenses() -> None:
    assert "binary" in word_forms("binaries")
    assert "grey" in word_forms("greyed")
    assert "cutoff" in word_forms("cutoffs")
