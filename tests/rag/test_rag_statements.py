"""Statements, the units an evidence answer quotes: numbered lists stay with their lead-in, an
enumerator goes with the item it opens, and an over-long run loses nothing."""

from __future__ import annotations

from rag.statements import split_statements

GRANTS = (
    "A. Under the licence: each contributor grants a licence for the following activities: "
    "1. Use 2. Copying 3. Display B. Under the patents: each contributor grants: 1. Use "
    "2. Sale 3. Offer for sale C. These rights also apply to a combination."
)


def test_a_numbered_list_stays_with_the_lead_in_that_introduces_it() -> None:
    assert split_statements(GRANTS, 80) == [
        "A. Under the licence: each contributor grants a licence for the following activities: "
        "1. Use 2. Copying 3. Display",
        "B. Under the patents: each contributor grants: 1. Use 2. Sale 3. Offer for sale",
        "C. These rights also apply to a combination.",
    ]


def test_an_enumerator_of_another_style_ending_an_item_opens_the_next_section() -> None:
    # The passage starts inside section B, so "C." is known only by its style.
    text = "Under the patents: each contributor grants: 1. Use 2. Sale C. These rights apply."
    assert split_statements(text, 80) == [
        "Under the patents: each contributor grants: 1. Use 2. Sale",
        "C. These rights apply.",
    ]


def test_numbered_sentences_stay_separate_statements() -> None:
    text = ("(1) Where the claim is $5,000 or greater it is referred to the investigators. "
            "A record of the referral is kept. (2) When the claim is below $5,000 it is referred "
            "to the commanding officer.")
    assert split_statements(text, 80) == [
        "(1) Where the claim is $5,000 or greater it is referred to the investigators.",
        "A record of the referral is kept.",
        "(2) When the claim is below $5,000 it is referred to the commanding officer.",
    ]


def test_a_number_that_ends_a_sentence_is_its_own_not_the_next_items() -> None:
    text = "The largest crate weighs 5. The next rule covers 2. Cars are not covered."
    assert split_statements(text, 80) == [
        "The largest crate weighs 5.", "The next rule covers 2.", "Cars are not covered."]


def test_an_over_long_run_is_cut_into_pieces_without_losing_its_tail() -> None:
    cells = " ".join(f"cell{index}" for index in range(130))
    pieces = split_statements(f"{cells}.", 50)
    assert [len(piece.split()) for piece in pieces] == [50, 50, 30]
    assert " ".join(pieces) == f"{cells}."
