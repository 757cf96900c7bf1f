"""What the model writes reaches the user only as checked sentences: in every draft, not only
in the final answer. No model here: the model's text is given, the passages are real text."""

from __future__ import annotations

from rag.checked_writing import CheckedWriting
from rag.compose import Part
from rag.types import Citation, Passage

PAGE_TWO = (
    "The ferry to Marrow Island departs every ninety minutes from Pier 7. A single adult ticket "
    "costs 14 euros and children under twelve travel free."
)
PAGE_THREE = "Lost property is kept at the harbour office for thirty days."
PAGES = {("guide.pdf", 2): PAGE_TWO, ("guide.pdf", 3): PAGE_THREE}
PASSAGES = [
    Passage(chunk_id=1, document="guide.pdf", page=2, text=PAGE_TWO, score=1.0),
    Passage(chunk_id=2, document="guide.pdf", page=3, text=PAGE_THREE, score=0.5),
]
QUESTION = "How often does the ferry to Marrow Island depart?"
DOCUMENTS_PART = Part(
    "The ferry to Marrow Island departs every ninety minutes from Pier 7.",
    Citation("guide.pdf", 2, "The ferry to Marrow Island departs every ninety minutes"),
)


def writing(documents_parts: tuple[Part, ...] = ()) -> CheckedWriting:
    return CheckedWriting(
        QUESTION, PASSAGES, lambda document, page: PAGES.get((document, page)),
        relevance={("guide.pdf", 2): 2.0, ("guide.pdf", 3): 0.5}, margin=0.3,
        documents_parts=documents_parts,
    )


def drafts(checked: CheckedWriting, text: str) -> list[str]:
    """The drafts the user would see while the model writes `text` word by word."""
    seen = []
    words = text.split()
    for count in range(1, len(words) + 1):
        draft = checked.draft(" ".join(words[:count]))
        if draft:
            seen.append(draft)
    return seen


def test_an_invented_sentence_never_shows_not_even_in_a_draft() -> None:
    text = ("The ferry departs every ninety minutes from Pier 7. The ferry was built on the moon in "
            "1850. Children under twelve travel free. A single adult")
    checked = writing()
    shown = drafts(checked, text)
    assert shown and all("moon" not in draft for draft in shown)
    assert shown[-1] == ("The ferry departs every ninety minutes from Pier 7. Children under twelve "
                         "travel free. [guide.pdf p.2]")
    parts, shortened = checked.final(text, hit_limit=True)
    assert [p.text for p in parts] == ["The ferry departs every ninety minutes from Pier 7.",
                                       "Children under twelve travel free."]
    assert checked.dropped == 1 and not shortened  # what was cut is not what is shown


def test_a_sentence_still_being_written_is_not_shown() -> None:
    checked = writing()
    assert checked.draft("Children under twelve travel") is None
    assert checked.draft("Children under twelve travel free. The") == (
        "Children under twelve travel free. [guide.pdf p.2]"
    )
    assert checked.draft("Children under twelve travel free. The ticket") is None  # no news


def test_a_true_sentence_from_a_page_about_something_else_is_not_cited() -> None:
    checked = writing()
    parts, _ = checked.final("Lost property is kept at the harbour office for thirty days.",
                             hit_limit=False)
    assert parts == []


def test_hybrid_drafts_start_with_the_documents_and_keep_what_the_model_leaves_out() -> None:
    checked = writing((DOCUMENTS_PART,))
    assert checked.first_draft() == f"{DOCUMENTS_PART.text} [guide.pdf p.2]"
    # The model says something else that is true: it leads, the documents' sentence follows.
    parts, _ = checked.final("Children under twelve travel free.", hit_limit=False)
    assert [p.text for p in parts] == ["Children under twelve travel free.", DOCUMENTS_PART.text]
    # The model says the documents' sentence in its own words: it is not said twice.
    again, _ = checked.final("The ferry to Marrow Island departs every ninety minutes.",
                             hit_limit=False)
    assert [p.text for p in again] == ["The ferry to Marrow Island departs every ninety minutes."]


def test_when_the_model_does_not_know_only_the_documents_speak() -> None:
    checked = writing((DOCUMENTS_PART,))
    parts, _ = checked.final("I don't know.", hit_limit=False)
    assert parts == [DOCUMENTS_PART]
    assert writing().final("I don't know.", hit_limit=False)[0] == []
