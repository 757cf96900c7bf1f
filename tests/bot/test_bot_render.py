"""Shared reply text: answers with citations, abstentions, shortened marks, splitting, errors."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import QueueFullError
from bot.jobs import citation_to_dict
from bot.render import (
    format_eta,
    render_answer,
    render_ingest,
    render_ingest_progress,
    render_queued,
    render_stored_citation,
    split_message,
)
from bot.replies import APOLOGY, user_message
from rag.types import Answer, Citation, FileOutcome, IngestReport, Passage


def passage(document: str, page: int) -> Passage:
    return Passage(0, document, page, "text", 0.5)


def test_answer_lists_its_distinct_citations() -> None:
    answer = Answer(
        "Refunds take 14 days.",
        [
            Citation("policy.pdf", 13, "q"),
            Citation("policy.pdf", 13, "q2"),
            Citation("faq.pdf", 2, ""),
        ],
        [],
        abstained=False,
    )
    assert render_answer(answer) == (
        "Refunds take 14 days.\n\nSources: [policy.pdf p.13] [faq.pdf p.2]"
    )


def test_abstention_names_the_closest_pages() -> None:
    answer = Answer(
        "", [], [passage("file.pdf", 4), passage("file.pdf", 4), passage("file.pdf", 9)], True
    )
    assert render_answer(answer) == "The documents don't say. Closest: file.pdf p.4, file.pdf p.9."
    assert render_answer(Answer("", [], [], abstained=True)) == "The documents don't say."


def test_a_shortened_answer_is_marked() -> None:
    answer = Answer("It is long.", [Citation("a.pdf", 1, "")], [], False, shortened=True)
    assert render_answer(answer) == "It is long. (answer shortened)\n\nSources: [a.pdf p.1]"


def test_queued_and_eta() -> None:
    assert render_queued(3, 42.4) == "queued (position 3, ~42s)"
    assert format_eta(0.2) == "~1s" and format_eta(300) == "~5 min"


def test_ingest_summary_has_counts_duplicates_and_reasons() -> None:
    report = IngestReport(
        [
            FileOutcome("a.pdf", "added", pages=10, chunks=30),
            FileOutcome("b.pdf", "duplicate"),
            FileOutcome("c.pdf", "failed", reason="encrypted"),
        ],
        seconds=2.5,
    )
    assert render_ingest(report) == (
        "Indexed 1 of 3 file(s): 10 pages, 30 chunks (2.5s).\n"
        "Already indexed, skipped: b.pdf.\n"
        "Failed: c.pdf: encrypted"
    )


def test_split_prefers_paragraphs_then_sentences_then_words() -> None:
    para = "First paragraph here.\n\nSecond one is here."
    assert split_message(para, 30) == ["First paragraph here.", "Second one is here."]
    sentences = "One two three. Four five six. Seven"
    assert split_message(sentences, 30) == ["One two three. Four five six.", "Seven"]
    words = "alpha beta gamma delta epsilon"
    assert split_message(words, 12) == ["alpha beta", "gamma delta", "epsilon"]
    assert split_message("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_message("short", 100) == ["short"]
    assert split_message("   ", 10) == []


def test_split_keeps_a_citation_on_one_line() -> None:
    text = "The answer is here [guide.pdf p.13] and more"
    pieces = split_message(text, 30)
    assert any("[guide.pdf p.13]" in piece for piece in pieces)


def test_long_answer_fits_discord() -> None:
    body = " ".join(f"Sentence number {i} says something useful." for i in range(200))
    answer = Answer(body, [Citation("a.pdf", 1, "")], [], False)
    messages = split_message(render_answer(answer), 2000)
    assert len(messages) > 1 and all(len(m) <= 2000 for m in messages)
    assert messages[-1].endswith("Sources: [a.pdf p.1]")
    assert all(m.endswith(".") for m in messages[:-1])  # cut at sentence ends


@given(
    st.text(alphabet=st.sampled_from("ab .\n[]!"), max_size=400),
    st.integers(min_value=1, max_value=60),
)
def test_split_never_exceeds_the_limit_and_loses_nothing(text: str, limit: int) -> None:
    pieces = split_message(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join(pieces).replace(" ", "").replace("\n", "") == re.sub(r"\s", "", text)


def test_user_message_for_known_and_unknown_errors(caplog: pytest.LogCaptureFixture) -> None:
    assert user_message(QueueFullError("The queue is full.")) == "The queue is full."
    assert caplog.records == []
    try:
        raise KeyError("secret internals")
    except KeyError as exc:
        with caplog.at_level(logging.ERROR):
            text = user_message(exc, context="job 7")
    assert text == APOLOGY and "secret" not in text
    (record,) = caplog.records
    assert record.exc_info is not None and "job 7" in record.getMessage()


def test_ingest_summary_counts_pages_read_from_images_and_shows_notes() -> None:
    report = IngestReport(
        [
            FileOutcome("scan.pdf", "added", pages=4, chunks=6, ocr_pages=3,
                        reason="3 page(s) read from images (OCR)"),
            FileOutcome("paper.pdf", "added", pages=10, chunks=30),
        ],
        seconds=9.0,
    )
    assert render_ingest(report) == (
        "Indexed 2 of 2 file(s): 14 pages (3 read from images), 36 chunks (9.0s).\n"
        "Note: scan.pdf: 3 page(s) read from images (OCR)"
    )


def test_a_citation_read_from_an_image_says_so_live_and_from_history() -> None:
    answer = Answer(
        "The ferry leaves at 23:40.",
        [Citation("scan.pdf", 3, "leaves at 23:40", from_image=True), Citation("a.pdf", 1, "")],
        [],
        False,
    )
    assert render_answer(answer).endswith(
        "Sources: [scan.pdf p.3, read from an image] [a.pdf p.1]"
    )
    stored = citation_to_dict(answer.citations[0])
    assert render_stored_citation(stored) == "[scan.pdf p.3, read from an image]"
    assert render_stored_citation({"document": "old.pdf", "page": 2}) == "[old.pdf p.2]"


def test_ingest_progress_counts_pages_read_from_images_on_their_own() -> None:
    from rag.types import ocr_progress_name

    assert render_ingest_progress("a.pdf", 3, 10) == "indexing a.pdf: page 3 of 10…"
    assert render_ingest_progress(ocr_progress_name("scan.pdf"), 2, 5) == (
        "reading page images of scan.pdf: 2 of 5…"
    )
