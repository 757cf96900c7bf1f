"""Grounding: answer sentences are cited with quotes verified against the stored page."""

from __future__ import annotations

import pytest

from rag.cite import (
    QUOTE_WORDS,
    compound_words,
    content_words,
    ground_sentences,
    says_it_does_not_know,
)
from rag.normalize import normalize_for_match
from rag.types import Passage

PAGE_2 = (
    "Harbor Lights runs boats across the bay. The ferry to Marrow Island departs every ninety "
    "minutes from Pier 7. A single adult ticket costs 14 euros and children under twelve travel "
    "free."
)
PAGE_3 = "Lost property is kept at the harbour office for thirty days."
PAGES = {("guide.pdf", 2): PAGE_2, ("guide.pdf", 3): PAGE_3}


def stored(document: str, page: int) -> str | None:
    return PAGES.get((document, page))


def passages() -> list[Passage]:
    return [
        Passage(chunk_id=1, document="guide.pdf", page=2, text=PAGE_2, score=0.9),
        Passage(chunk_id=2, document="guide.pdf", page=3, text=PAGE_3, score=0.5),
    ]


def test_a_supported_sentence_is_cited_with_a_verbatim_quote_from_its_page() -> None:
    grounded = ground_sentences(
        "The ferry to Marrow Island leaves every ninety minutes from Pier 7.", passages(), stored
    )
    assert len(grounded) == 1
    citation = grounded[0].citation
    assert citation is not None
    assert (citation.document, citation.page) == ("guide.pdf", 2)
    assert citation.quote in PAGE_2
    assert "Marrow Island" in citation.quote
    assert citation.render() == "[guide.pdf p.2]"


def test_each_sentence_is_cited_to_the_page_that_supports_it() -> None:
    answer = "A single adult ticket costs 14 euros. Lost property is kept for thirty days."
    grounded = ground_sentences(answer, passages(), stored)
    pages = [g.citation.page if g.citation else None for g in grounded]
    assert pages == [2, 3]
    assert grounded[1].citation is not None and grounded[1].citation.quote == PAGE_3


def test_an_unsupported_sentence_gets_no_citation() -> None:
    answer = "The ferry leaves from Pier 7. The captain is a retired astronaut named Zoltan."
    grounded = ground_sentences(answer, passages(), stored)
    assert grounded[0].citation is not None
    assert grounded[1].text.startswith("The captain")
    assert grounded[1].citation is None


def test_a_sentence_without_content_words_gets_no_citation() -> None:
    grounded = ground_sentences("Yes.", passages(), stored)
    assert [g.citation for g in grounded] == [None]


def test_a_quote_that_is_not_on_the_stored_page_is_dropped() -> None:
    # The passage claims text that the stored page does not have (e.g. the page was replaced).
    def other_page(document: str, page: int) -> str | None:
        return "This page now talks about something else entirely." if page == 2 else None

    grounded = ground_sentences(
        "The ferry to Marrow Island departs every ninety minutes.", passages(), other_page
    )
    assert [g.citation for g in grounded] == [None]


def test_quote_verification_ignores_case_spacing_and_ligatures_only() -> None:
    page = "The \ufb01rst ferry   departs at 06:00 from PIER 7 daily."
    passage = Passage(1, "a.pdf", 1, "The first ferry departs at 06:00 from Pier 7 daily.", 1.0)
    grounded = ground_sentences("The first ferry departs at 06:00.", [passage], lambda d, p: page)
    citation = grounded[0].citation
    assert citation is not None
    assert normalize_for_match(citation.quote) in normalize_for_match(page)


def test_a_long_quote_is_cut_to_a_window_that_holds_the_overlap() -> None:
    filler = " ".join(f"filler{i}" for i in range(40))
    text = f"{filler} the lighthouse keeper feeds seventeen gulls every morning at dawn."
    passage = Passage(1, "a.pdf", 4, text, 1.0)
    grounded = ground_sentences(
        "The lighthouse keeper feeds seventeen gulls every morning.", [passage], lambda d, p: text
    )
    citation = grounded[0].citation
    assert citation is not None
    assert len(citation.quote.split()) == QUOTE_WORDS
    assert "seventeen gulls" in citation.quote
    assert citation.quote in text


def test_no_passages_means_no_citations() -> None:
    grounded = ground_sentences("The ferry leaves from Pier 7.", [], stored)
    assert [g.citation for g in grounded] == [None]


def test_min_support_controls_how_much_overlap_is_needed() -> None:
    answer = "The ferry departs from Pier 7 carrying whales, dolphins, penguins and walruses."
    assert ground_sentences(answer, passages(), stored, min_support=0.9)[0].citation is None
    assert ground_sentences(answer, passages(), stored, min_support=0.3)[0].citation is not None


def test_content_words_drop_function_words_and_inflections() -> None:
    assert content_words("The ferries are in the harbours") == {"ferri", "harbour"}
    assert content_words("Pier 14 class glass") == {"pier", "14", "class", "glass"}
    # Inflected forms compare equal, so a paraphrase of the page still counts as support.
    assert content_words("ball bounces, net hits") == content_words("ball bouncing, net hitting")
    assert content_words("annotated") == content_words("annotates")
    # An adverb meets its adjective or noun ("normally" / "normal", "weekly" / "week"), but a
    # short word ending in -ly keeps its ending ("apply" is not "app").
    assert content_words("normally accessed") == content_words("normal access")
    assert content_words("weekly") == content_words("weeks")
    assert content_words("apply") != content_words("app")


@pytest.mark.parametrize(
    "answer",
    [
        "I don't know.",
        "I do not know.",
        "I dont know what the boiling point is.",
        "Sorry, I don't know",
        "The passages do not contain this information.",
        "The document does not mention tungsten.",
        "The context does not specify a date.",
        "This is not mentioned in the passages.",
        "The boiling point is not provided in the documents.",
        "There is no information about tungsten.",
    ],
)
def test_i_do_not_know_phrasings_are_recognised(answer: str) -> None:
    assert says_it_does_not_know(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "The ferry departs every ninety minutes.",
        "Nobody knows the origin of the name, the guide says.",
        "Passengers who do not know the route can ask at the office.",
        "The document mentions that tickets cost 14 euros.",
    ],
)
def test_real_answers_are_not_mistaken_for_i_do_not_know(answer: str) -> None:
    assert not says_it_does_not_know(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "I don\u2019t know.",
        "The passages don't contain the answer.",
        "The document doesn't mention tungsten.",
    ],
)
def test_contracted_and_typographic_i_do_not_know_phrasings(answer: str) -> None:
    assert says_it_does_not_know(answer)


def test_echoing_the_question_does_not_count_as_support() -> None:
    question = "How often does the ferry to Marrow Island depart from Pier 7?"
    echo = "The ferry to Marrow Island departs from Pier 7 only when the moon is full."
    assert ground_sentences(echo, passages(), stored)[0].citation is not None  # words overlap
    grounded = ground_sentences(echo, passages(), stored, question=question)
    assert grounded[0].citation is None  # but what it adds to the question is unsupported
    faithful = "The ferry to Marrow Island departs every ninety minutes from Pier 7."
    assert ground_sentences(faithful, passages(), stored, question=question)[0].citation


def test_a_compound_counts_whether_written_as_one_word_or_two() -> None:
    assert compound_words("What key size should I pick?", "Next it asks about the keysize.") \
        == content_words("key size")
    assert compound_words("Where does the lockfile go?", "A lock file is kept.") \
        == content_words("lockfile")
    # Words that are merely neighbours, or a compound of a function word, count nothing extra.
    assert compound_words("What key size should I pick?", "The key has a size.") == set()
    assert compound_words("Can I set it up?", "Run the setup tool.") == set()
