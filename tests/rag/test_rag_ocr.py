"""OCR at ingest, through the real parse path: scans made in the test (a text PDF drawn to
pixels, tilted and blurred, put back as an image-only PDF) are read by the real recogniser in
its own limited child process; figures of text pages are read when the setting allows it."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pdfs
import pytest

from rag.errors import BadDocumentError
from rag.ocr import OcrOptions, OcrResult, OcrTask, model_files, unavailable_reason
from rag.parse import (
    ParsedDocument,
    ParseLimits,
    RawDocument,
    RawPage,
    assemble,
    parse_pdf,
    plan_ocr,
)
from rag.pdfium import ImageBox

# Generous budgets: the shared test machine can be many times slower than a quiet one.
OCR = OcrOptions(page_timeout_s=180.0, load_timeout_s=300.0)
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


@pytest.mark.slow
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


class RecordingTurn:
    """A lock that counts who holds it, to see that OCR runs only while it is held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.holders = 0
        self.entries = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self.holders += 1
        self.entries += 1

    def __exit__(self, *exc: object) -> None:
        self.holders -= 1
        self._lock.release()


def test_files_parsed_at_once_take_turns_for_ocr_and_text_pages_need_no_turn() -> None:
    turn = RecordingTurn()
    holders_while_reading: list[int] = []

    def parse(data: bytes) -> ParsedDocument:
        return parse_pdf(data, LIMITS,
                         lambda done, total: holders_while_reading.append(turn.holders), turn)

    scans = [pdfs.scanned_pdf(SCAN_PAGES[:1]), pdfs.scanned_pdf(SCAN_PAGES[1:])]
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(parse, scans)
    assert "lighthouse" in words(first.pages[0].image_text)
    assert "ferry" in words(second.pages[0].image_text)
    assert turn.entries == 2 and turn.holders == 0
    assert holders_while_reading and set(holders_while_reading) == {1}  # always under the turn
    parse_pdf(pdfs.make_pdf([SCAN_PAGES[0] * 3]), LIMITS, None, turn)
    assert turn.entries == 2  # a text layer needs no OCR, so it never waits for one


@pytest.mark.slow
def test_a_short_page_is_not_a_scan_and_goes_in_with_a_warning() -> None:
    parsed = parse_pdf(pdfs.make_pdf(["Hello world"] * 3), LIMITS)
    assert [p.text for p in parsed.pages] == ["Hello world"] * 3
    assert all(p.has_text and not p.scanned for p in parsed.pages)
    assert parsed.pages_from_images == 0
    assert any("nearly empty" in w for w in parsed.warnings), parsed.warnings


@pytest.mark.slow
def test_a_scan_with_ocr_off_is_refused_as_such() -> None:
    with pytest.raises(BadDocumentError, match=r"no text layer .*OCR is off"):
        parse_pdf(pdfs.scanned_pdf(SCAN_PAGES[:1]), with_ocr(enabled=False))


@pytest.mark.slow
def test_a_blank_scan_gets_a_true_reason() -> None:
    """A grey page: nothing, or only specks under the confidence threshold, is found."""
    with pytest.raises(
        BadDocumentError,
        match=r"no text layer, and (OCR found no readable text|.* no text could be read with)",
    ):
        parse_pdf(pdfs.image_only_pdf(), LIMITS)


@pytest.mark.slow
def test_low_confidence_text_is_dropped_not_indexed() -> None:
    """With a threshold no line can reach, nothing read from the scan is kept."""
    with pytest.raises(BadDocumentError, match=r"no text could be read with confidence"):
        parse_pdf(pdfs.scanned_pdf(SCAN_PAGES[:1]), with_ocr(min_confidence=0.99999))


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_scan_whose_only_page_times_out_is_refused_with_that_reason() -> None:
    with pytest.raises(
        BadDocumentError,
        match=r"no text layer, and OCR failed on its 1 page image\(s\) \(reading it from its "
        r"image took longer than 0.05 s\)",
    ):
        parse_pdf(pdfs.scanned_pdf(SCAN_PAGES[:1]), with_ocr(page_timeout_s=0.05))
    assert multiprocessing.active_children() == []


@pytest.mark.slow
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


@pytest.mark.slow
def test_words_in_a_figure_are_read_only_when_figure_ocr_is_on() -> None:
    data = pdfs.figure_pdf(FIGURE_TEXT, FIGURE_WORDS)
    off = parse_pdf(data, with_ocr(figures=False))
    assert "kestrel" not in off.pages[0].stored_text.lower()
    assert off.pages_from_images == 0

    on = parse_pdf(data, with_ocr(figures=True))
    page = on.pages[0]
    assert page.text == off.pages[0].text  # the text layer is kept as it was
    assert not page.scanned
    expected = {"tide", "gauge", "kestrel", "sensor", "depth", "42"}
    assert expected <= words(page.image_text), (page.image_text, on.warnings)
    assert "kestrel" in page.stored_text.lower()


# --- which pages are read from images (no recogniser needed) -------------------------------

LONG = "This page has a real text layer with many more than twenty characters."


def raw(*pages: RawPage, renderable: bool = True) -> RawDocument:
    return RawDocument(title="", pages=list(pages), parser="pypdf", renderable=renderable)


def box(area: float) -> ImageBox:
    return ImageBox(0.0, 0.0, 1.0, area)  # full width, `area` of the height


def test_scans_are_planned_first_then_figures_within_the_budget() -> None:
    document = raw(
        RawPage(LONG, (box(0.3),)),  # 1: a text page with a figure
        RawPage("3", (box(1.0),)),  # 2: a scan with a page number in its text layer
        RawPage("Hello world"),  # 3: short, no image: not a scan
        RawPage(LONG, (box(0.95),)),  # 4: a scan that already has a text layer
        RawPage("", (box(0.5),)),  # 5: a scan
        RawPage(LONG, (box(0.01),)),  # 6: a tiny image (a logo)
    )
    tasks, unread = plan_ocr(document, replace(OCR, figures=True))
    assert [(t.page, t.whole_page) for t in tasks] == [(2, True), (5, True), (1, False)]
    assert unread == []
    assert [t.page for t in plan_ocr(document, OCR)[0]] == [2, 5]  # figures off by default
    tasks, unread = plan_ocr(document, replace(OCR, figures=True, max_pages=1))
    assert [t.page for t in tasks] == [2] and unread == [5]
    assert plan_ocr(document, replace(OCR, enabled=False)) == ([], [2, 5])
    assert plan_ocr(raw(*document.pages, renderable=False), OCR) == ([], [])


def test_without_the_ocr_packages_text_pages_go_in_and_scans_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rag.parse

    monkeypatch.setattr(rag.parse, "ocr_unavailable", lambda: "OCR is not installed (pip x)")

    def never(tasks: list[OcrTask]) -> list[OcrResult]:
        raise AssertionError("OCR must not run")

    parsed = assemble(raw(RawPage(LONG), RawPage("", (box(1.0),))), OCR, never)
    assert [p.has_text for p in parsed.pages] == [True, False]
    assert "1 page image(s) not read: OCR is not installed (pip x)" in parsed.warnings
    refusal = r"no text layer \(1 scanned page\(s\)\) and OCR is not installed"
    with pytest.raises(BadDocumentError, match=refusal):
        assemble(raw(RawPage("", (box(1.0),))), OCR, never)


def test_a_document_with_no_text_and_no_images_is_blank_not_a_scan() -> None:
    with pytest.raises(BadDocumentError, match=r"no text at all \(2 blank page\(s\)\)"):
        assemble(raw(RawPage(""), RawPage(" ")), OCR, lambda tasks: [])
