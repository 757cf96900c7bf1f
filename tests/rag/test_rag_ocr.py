"""OCR at ingest, through the real parse path: scans made in the test (a text PDF drawn to
pixels, tilted and blurred, put back as an image-only PDF) are read by the real recogniser in
its own limited child process; figures of text pages are read when the setting allows it."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
from dataclasses import replace

import pdfs
import pytest

from rag.errors import BadDocumentError
from rag.ocr import OcrOptions, model_files, unavailable_reason
from rag.parse import ParseLimits, parse_pdf

pytestmark = pytest.mark.slow

OCR = OcrOptions(page_timeout_s=60.0, load_timeout_s=120.0)
LIMITS = ParseLimits(max_bytes=20_000_000, max_pages=50, timeout_s=60, memory_mb=1024, ocr=OCR)
SCAN_PAGES = [
    "The lighthouse on Skerry Point was built in 1874 by the harbour board. "
    "It is painted white with one red band.",
    "The night ferry to Inishmore leaves pier seven at 23:40. "
    "The crossing takes ninety minutes in calm weather.",
]


def with_ocr(**changes: object) -> ParseLimits:
    return replace(LIMITS, ocr=replace(OCR, **changes))  # type: ignore[arg-type]


def words(text: str) -> set[str]:
    return {w.strip(".,:").lower() for w in text.split()}


def test_the_models_ship_inside_the_wheel() -> None:
    assert unavailable_reason() is None
    for path in model_files().values():
        assert path.is_file() and path.stat().st_size > 100_000, path


def test_the_ocr_process_cannot_open_a_connection() -> None:
    """The guard that makes "nothing downloads at run time" hold even if a library tried."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "from rag.ocr import _forbid_network\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
            "_forbid_network()\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "except RuntimeError as exc:\n"
            "    print('refused:', exc)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
    assert "refused: network access is not allowed" in result.stdout, result.stderr


def test_a_tilted_blurred_scan_is_read_page_by_page_with_progress() -> None:
    progress: list[tuple[int, int]] = []
    parsed = parse_pdf(
        pdfs.scanned_pdf(SCAN_PAGES), LIMITS, lambda done, total: progress.append((done, total))
    )
    assert [p.scanned for p in parsed.pages] == [True, True]
    assert [p.text for p in parsed.pages] == ["", ""]  # no text layer: all of it came from pixels
    first, second = (words(p.image_text) for p in parsed.pages)
    assert {"lighthouse", "skerry", "1874", "harbour", "red"} <= first
    assert {"ferry", "inishmore", "pier", "seven", "ninety"} <= second
    assert not {"ferry", "inishmore"} & first  # each page's words stay on that page
    assert parsed.pages_from_images == 2
    assert progress[-1] == (2, 2)
    assert multiprocessing.active_children() == []


def test_a_short_page_is_not_a_scan_and_goes_in_with_a_warning() -> None:
    parsed = parse_pdf(pdfs.make_pdf(["Hello world"] * 3), LIMITS)
    assert [p.text for p in parsed.pages] == ["Hello world"] * 3
    assert all(p.has_text and not p.scanned for p in parsed.pages)
    assert parsed.pages_from_images == 0
    assert any("nearly empty" in w for w in parsed.warnings), parsed.warnings


def test_a_scan_with_ocr_off_is_refused_as_such() -> None:
    with pytest.raises(BadDocumentError, match=r"no text layer .*OCR is off"):
        parse_pdf(pdfs.scanned_pdf(SCAN_PAGES[:1]), with_ocr(enabled=False))


def test_a_blank_scan_gets_a_true_reason() -> None:
    """A grey page: nothing, or only specks under the confidence threshold, is found."""
    with pytest.raises(
        BadDocumentError,
        match=r"no text layer, and (OCR found no readable text|.* no text could be read with)",
    ):
        parse_pdf(pdfs.image_only_pdf(), LIMITS)


def test_low_confidence_text_is_dropped_not_indexed() -> None:
    """With a threshold no line can reach, nothing read from the scan is kept."""
    with pytest.raises(BadDocumentError, match=r"no text could be read with confidence"):
        parse_pdf(pdfs.scanned_pdf(SCAN_PAGES[:1]), with_ocr(min_confidence=0.99999))


def test_a_page_over_its_time_budget_is_skipped_and_the_rest_goes_in() -> None:
    scan = pdfs.scanned_pdf(SCAN_PAGES[:1])
    text = pdfs.make_pdf(["This text page about tide tables must still go in whole."])
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for source in (text, scan):
        for page in PdfReader(io.BytesIO(source)).pages:
            writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    parsed = parse_pdf(buffer.getvalue(), with_ocr(page_timeout_s=0.05))
    assert parsed.pages[0].text.startswith("This text page about tide tables")
    assert parsed.pages[1].image_text == "" and not parsed.pages[1].has_text
    assert any("p. 2: reading it from its image took longer than 0.05 s" in w
               for w in parsed.warnings), parsed.warnings
    assert multiprocessing.active_children() == []


def test_the_per_file_page_budget_stops_reading_and_says_so() -> None:
    parsed = parse_pdf(pdfs.scanned_pdf(SCAN_PAGES), with_ocr(max_pages=1))
    assert parsed.pages[0].scanned and not parsed.pages[1].has_text
    assert any("1 scanned page(s) not read: over the per-file OCR budget of 1 pages" in w
               for w in parsed.warnings), parsed.warnings


FIGURE_WORDS = ["Tide gauge Kestrel", "Sensor depth 42 m"]
FIGURE_TEXT = (
    "Figure 1 below shows the instrument that the survey team placed at the harbour mouth. "
    "Its labels are part of the picture only."
)


def test_words_in_a_figure_are_read_only_when_figure_ocr_is_on() -> None:
    data = pdfs.figure_pdf(FIGURE_TEXT, FIGURE_WORDS)
    off = parse_pdf(data, with_ocr(figures=False))
    assert "kestrel" not in off.pages[0].stored_text.lower()
    assert off.pages_from_images == 0

    on = parse_pdf(data, with_ocr(figures=True))
    page = on.pages[0]
    assert page.text == off.pages[0].text  # the text layer is kept as it was
    assert not page.scanned
    assert {"tide", "gauge", "kestrel", "sensor", "depth", "42"} <= words(page.image_text)
    assert "kestrel" in page.stored_text.lower()
