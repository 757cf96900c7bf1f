"""Scans and figures through `folio ingest` and `folio ask --json`, as a user runs them: the
answer that exists only as pixels is found, and its citation says it was read from an image."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pdfs
import pytest

from rag.store import DocumentStore

pytestmark = pytest.mark.slow

SCAN = [
    "Harbour notice one. The lighthouse on Skerry Point was built in 1874 by the harbour board.",
    "Harbour notice two. The night ferry to Inishmore leaves pier seven at 23:40 every "
    "Friday. The crossing takes ninety minutes in calm weather.",
    "Harbour notice three. Lost property is kept at the harbour office for thirty days.",
]
FIGURE_TEXT = (
    "Figure 1 shows the tide gauge that the survey team placed at the harbour mouth. "
    "The words in the figure are part of the picture only."
)


Folio = Callable[..., Any]


def ask(folio: Folio, data_dir: Path, question: str) -> dict[str, object]:
    result = folio("--data-dir", str(data_dir), "ask", "--json", question)
    assert result.code == 0, result.err
    answer: dict[str, object] = json.loads(result.out)
    return answer


def test_a_question_answered_only_by_a_scan_cites_the_right_page_read_from_an_image(
    folio: Folio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIO_GENERATOR__ANSWER_MODE", "extract")
    monkeypatch.setenv("FOLIO_INGEST__OCR_PAGE_TIMEOUT_S", "180")  # a loaded machine is slow
    scan = tmp_path / "notices.pdf"
    scan.write_bytes(pdfs.scanned_pdf(SCAN))
    data_dir = tmp_path / "data"
    ingest = folio("--data-dir", str(data_dir), "ingest", str(scan))
    assert ingest.code == 0, ingest.err
    assert "3 pages (3 read from images)" in ingest.out, ingest.out
    # The progress bar counts the pages read from images on their own bar: 3 of 3.
    assert re.search(r"OCR notices\.pdf.*3/3", ingest.err), ingest.err

    answer = ask(folio, data_dir, "When does the night ferry to Inishmore leave?")
    assert not answer["abstained"], answer
    citations = answer["citations"]
    assert isinstance(citations, list) and citations, answer
    assert [c[:2] for c in citations] == [["notices.pdf", 2]], answer
    assert "23:40" in citations[0][2] or "Inishmore" in citations[0][2], answer
    assert answer["cited_from_images"] == [["notices.pdf", 2]]

    shown = folio("--data-dir", str(data_dir), "ask", "When does the night ferry to Inishmore leave?")
    assert "[notices.pdf p.2, read from an image]" in shown.out, shown.out


def test_words_in_a_figure_become_searchable_with_figure_ocr_on(
    folio: Folio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIO_GENERATOR__ANSWER_MODE", "extract")
    monkeypatch.setenv("FOLIO_INGEST__OCR_PAGE_TIMEOUT_S", "180")  # a loaded machine is slow
    monkeypatch.setenv("FOLIO_INGEST__OCR_FIGURES", "true")
    paper = tmp_path / "survey.pdf"
    paper.write_bytes(
        pdfs.figure_pdf(FIGURE_TEXT, ["The gauge model is Kestrel.", "Its sensor depth is 42 m."])
    )
    data_dir = tmp_path / "data"
    ingest = folio("--data-dir", str(data_dir), "ingest", str(paper))
    assert ingest.code == 0 and "1 read from images" in ingest.out, ingest.out

    # "Kestrel" exists only as pixels of the figure: the keyword index has it now.
    store = DocumentStore(data_dir / "documents.sqlite")
    try:
        found = store.chunks(store.keyword_search("default", "Kestrel", 5))
    finally:
        store.close()
    assert [c.document for c in found.values()] == ["survey.pdf"]
    assert all("Kestrel" in c.text for c in found.values())

    answer = ask(folio, data_dir, "What is the sensor depth of the Kestrel gauge?")
    assert ["survey.pdf", 1] in answer["retrieved"], answer  # type: ignore[operator]
    assert not answer["abstained"], answer
    assert "42 m" in str(answer["answer"]), answer
    assert answer["cited_from_images"] == [["survey.pdf", 1]], answer
