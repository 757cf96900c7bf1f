"""`folio eval` reports what the user sees: abstentions with their reply text, follow-ups with
their history, and faithfulness (answers with a sentence their cited pages do not support)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pdfs
import pytest

from bot.measure.evaluate import Question, score, summarize, unsupported_sentences
from rag.types import Answer, Citation

PAGES = [
    "The harbour office keeps lost property for thirty days. Items can be collected on weekdays.",
    "The ferry to Marrow Island departs every ninety minutes from Pier 7. A single adult ticket "
    "costs 14 euros.",
    "B. Fares: the office sells three tickets: 1. Single 2. Return 3. Season",
]


def answer(text: str, *pages: int) -> Answer:
    return Answer(text, [Citation("guide.pdf", p, "q") for p in pages], [], abstained=False)


def page_text(document: str, page: int) -> str | None:
    return PAGES[page - 1] if document == "guide.pdf" else None


def test_a_sentence_its_cited_page_does_not_support_is_reported() -> None:
    faithful = answer("The ferry departs every ninety minutes from Pier 7. [guide.pdf p.2]", 2)
    assert unsupported_sentences(faithful, page_text) == []
    invented = answer("The ferry departs every ninety minutes. It has a café with 4K screens.", 2)
    assert unsupported_sentences(invented, page_text) == ["It has a café with 4K screens."]
    # A quoted numbered list is checked as the statement it is, not as its numbers.
    listed = answer("B. Fares: the office sells three tickets: 1. Single 2. Return 3. Season "
                    "[guide.pdf p.3]", 3)
    assert unsupported_sentences(listed, page_text) == []
    # The marks say where each sentence comes from: page 1 does not hold the ferry's times.
    wrong_page = answer("The ferry departs every ninety minutes. [guide.pdf p.1]", 1, 2)
    assert unsupported_sentences(wrong_page, page_text) == [
        "The ferry departs every ninety minutes. [guide.pdf p.1]"
    ]
    # A mark after a question mark belongs to the question, not to the next page's sentence.
    two_pages = answer("Where does the ferry leave from? [guide.pdf p.2] The harbour office keeps "
                       "lost property for thirty days. [guide.pdf p.1]", 1, 2)
    assert unsupported_sentences(two_pages, page_text) == [
        "Where does the ferry leave from? [guide.pdf p.2]"
    ]


def test_the_summary_counts_unfaithful_answers_among_those_given() -> None:
    question = Question("q1", "when?", "guide.pdf", [2], ["ninety"], "lookup")
    record = {"answer": "x", "citations": [["guide.pdf", 2, "q"]], "retrieved": [["guide.pdf", 2]],
              "abstained": False, "seconds": 0.1}
    results = [score(question, {**record, "unsupported": []}),
               score(question, {**record, "unsupported": ["made up."]}),
               score(question, {**record, "abstained": True, "unsupported": []})]
    summary = summarize(results, 5)
    assert summary["unsupported_answers"] == 0.5  # one of the two answers given
    assert summary["by_kind"]["lookup"]["citation_precision"] == 1.0


@pytest.mark.slow
def test_eval_writes_abstentions_and_follow_ups_as_the_user_sees_them(
    folio: Callable[..., Any], tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.pdf").write_bytes(pdfs.make_pdf(PAGES))
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"id": "a", "question": "How often does the ferry to Marrow Island depart?",
         "doc": "guide.pdf", "pages": [2], "must_include": ["ninety minutes"], "kind": "lookup"},
        {"id": "b", "question": "What is the boiling point of tungsten?", "doc": None,
         "pages": [], "must_include": [], "kind": "unanswerable"},
        {"id": "c", "question": "and how much is a ticket?", "doc": "guide.pdf", "pages": [2],
         "must_include": ["14 euros"], "kind": "lookup",
         "history": [{"question": "How often does the ferry to Marrow Island depart?",
                      "answer": "Every ninety minutes from Pier 7. [guide.pdf p.2]"}]},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "answers.jsonl"
    result = folio("--data-dir", str(tmp_path / "data"), "eval", str(questions),
                         "--docs", str(docs), "--out", str(out), "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["unsupported_answers"] == 0.0
    assert summary["abstention_unanswerable"] == 1.0
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["b"]["abstained"] and records["b"]["answer"].startswith("The documents don't")
    # Why it declined, and on which scale, so a threshold can be calibrated from one run.
    assert records["b"]["declined_because"] and not records["a"]["declined_because"]
    assert records["a"]["evidence_match"] >= 0.98 > (records["b"]["evidence_match"] or 0.0)
    assert len(records["a"]["similarities"]) == len(records["a"]["retrieved"]) > 0
    assert max(records["a"]["similarities"]) > 0.35 > max(records["b"]["similarities"])
    assert records["c"]["history"][0][0].startswith("How often does the ferry")
    assert "14 euros" in records["c"]["answer"]
