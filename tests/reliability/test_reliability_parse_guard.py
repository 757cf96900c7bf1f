"""PDFium reads the text layers by default; pypdf's structural check still refuses hostile files
first (a decompression bomb, also one hidden in a form XObject; deep nesting), with the same
one-line reasons as when pypdf read the text. Real parse children, no models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pdfs
import pytest
from reliability_hostile import (
    _deflated_zeros,
    _stream,
    decompression_bomb_pdf,
    nested_arrays_pdf,
    raw_pdf,
)

from rag.errors import BadDocumentError
from rag.parse import ParseLimits, TextParser, parse_pdf

LIMITS = ParseLimits(max_bytes=5_000_000, max_pages=20, timeout_s=60, memory_mb=1024)
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def form_bomb_pdf(megabytes: int = 120) -> bytes:
    """A page with real text whose content also draws a form XObject, and the form's content
    stream inflates to `megabytes` MB: the page's own content stream is small."""
    text = b"BT /F1 12 Tf 72 720 Td (This page draws a form that hides a bomb.) Tj ET /Fm1 Do"
    form = _stream(
        _deflated_zeros(megabytes),
        flate=True,
        extra=b" /Type /XObject /Subtype /Form /BBox [0 0 595 842]",
    )
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R "
            b"/Resources << /Font << /F1 4 0 R >> /XObject << /Fm1 6 0 R >> >> >>",
            _FONT,
            _stream(text),
            form,
        ]
    )


def test_either_parser_reads_the_text_layers_pypdf_by_default() -> None:
    pages = ["The lighthouse keeper logs every ship that passes the cape.", "Page two is short."]
    parsed = parse_pdf(
        pdfs.make_pdf(pages, title="Cape log"), replace(LIMITS, text_parser="pdfium")
    )
    assert parsed.parser == "PDFium" and parsed.title == "Cape log"
    assert [p.text for p in parsed.pages] == pages
    by_default = parse_pdf(pdfs.make_pdf(pages, title="Cape log"), LIMITS)
    assert by_default.parser == "pypdf" and [p.text for p in by_default.pages] == pages


BOMB = "a page's content is too large to read (a decompression bomb?)"
NESTED = "the PDF is nested too deeply to read"


@pytest.mark.parametrize(
    ("build", "reason", "text_parser"),
    [
        (decompression_bomb_pdf, BOMB, "pdfium"),
        (decompression_bomb_pdf, BOMB, "pypdf"),
        (nested_arrays_pdf, NESTED, "pdfium"),
        (nested_arrays_pdf, NESTED, "pypdf"),
        # pypdf's text extraction reads past this one (the form's text is empty); the check
        # inflates every form a page draws.
        (form_bomb_pdf, BOMB, "pdfium"),
    ],
    ids=["bomb-pdfium", "bomb-pypdf", "nested-pdfium", "nested-pypdf", "form-bomb-pdfium"],
)
def test_hostile_files_are_refused_whichever_parser_reads_the_text(
    build: Callable[[], bytes], reason: str, text_parser: TextParser
) -> None:
    with pytest.raises(BadDocumentError) as caught:
        parse_pdf(build(), replace(LIMITS, text_parser=text_parser))
    assert str(caught.value) == reason


def test_a_file_pypdf_cannot_open_is_read_by_pdfium_with_a_note() -> None:
    pages = ["The salvage log records that the tug Marlow towed the barge on the third day."]
    parsed = parse_pdf(pdfs.truncated_xref_pdf(pages), LIMITS)
    assert parsed.parser == "PDFium"
    assert any(w.startswith("read by PDFium (pypdf could not") for w in parsed.warnings)
    assert "tug Marlow" in parsed.pages[0].text
