"""Statements, the units an evidence answer quotes: numbered lists stay with their lead-in, an
enumerator goes with the item it opens, and an over-long run loses nothing."""

from __future__ import annotations

from rag.statements import item_number, next_item, split_statements, whole_statement

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


def test_et_al_before_a_reference_number_ends_no_sentence() -> None:
    text = ("Tracking is hard. Kamble et al. [59] implemented a tracker on a GPU. "
            "Smith et al. reported more. [12] gives the rest.")
    assert split_statements(text) == [
        "Tracking is hard.",
        "Kamble et al. [59] implemented a tracker on a GPU.",
        "Smith et al. reported more.",
        "[12] gives the rest.",
    ]


def test_an_example_after_e_g_or_i_e_ends_no_sentence() -> None:
    text = ('The icon is named from the media type (e.g. "video" in "video/ogg") and ends in '
            '"-x-generic" (i.e. "video-x-generic"). Only one icon is allowed.')
    assert split_statements(text) == [
        'The icon is named from the media type (e.g. "video" in "video/ogg") and ends in '
        '"-x-generic" (i.e. "video-x-generic").',
        "Only one icon is allowed.",
    ]


def test_a_middle_initial_ends_no_sentence_but_an_enumerator_still_opens_its_item() -> None:
    text = ("Point of contact for the software: Guillaume P. Brat at the research centre. "
            "Rights granted: 5. Offer for sale C. Under patent rights the agency grants more.")
    assert split_statements(text) == [
        "Point of contact for the software: Guillaume P. Brat at the research centre.",
        "Rights granted: 5. Offer for sale",
        "C. Under patent rights the agency grants more.",
    ]


def test_a_piece_of_a_sentence_is_completed_from_the_page() -> None:
    page = ("Records are kept as follows: a. All records of a move will be retained for a period "
            "of 10 years. b. Copies go to the central office.")
    # A chunk that starts inside item a. holds only its tail.
    assert whole_statement("be retained for a period of 10 years.", page, 80) == (
        "All records of a move will be retained for a period of 10 years.")
    # An enumerator the piece itself carries stays.
    assert whole_statement("b. Copies go to the central office.", page, 80) == (
        "b. Copies go to the central office.")
    # A statement too long to quote, or text the page does not hold, leaves the piece as it is.
    assert whole_statement("be retained for a period of 10 years.", page, 8) == (
        "be retained for a period of 10 years.")
    assert whole_statement("kept for ever.", page, 80) == "kept for ever."


def test_bulleted_items_follow_one_another_and_numbered_ones_count_up() -> None:
    bullet, first, second = (item_number(text) for text in (
        "• Cancelled build: the build was stopped.", "(1) A claim goes to the officer.",
        "(2) A smaller claim goes to the team."))
    assert bullet is not None and first == ("(digit)", 1) and second == ("(digit)", 2)
    assert next_item(bullet, bullet) and next_item(first, second)
    assert not next_item(second, first) and not next_item(first, bullet)
    assert item_number("-1 on an indefinite length.") is None  # a negative number, no bullet
    assert item_number("The limit is 5.") is None
