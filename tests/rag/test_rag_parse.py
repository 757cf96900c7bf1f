"""PDF parsing in a child process, on PDFs built by tests/pdfs.py (no models; ~0.5 s a parse)."""

from __future__ import annotations

from dataclasses import replace

import pdfs
import pytest

from rag.errors import BadDocumentError
from rag.parse import ParseLimits, check_pdf_bytes, parse_pdf, run_together_share, spaced_text

LIMITS = ParseLimits(max_bytes=5_000_000, max_pages=20, timeout_s=60, memory_mb=2048)


def test_known_text_lands_on_known_pages() -> None:
    data = pdfs.make_pdf(
        [
            "Page one talks about the harbour and its boats.",
            "Page two: the first ferry departs at dawn.\n\nA second paragraph on page two.",
            "Page three is about lost property.",
        ],
        title="Harbour guide",
    )
    parsed = parse_pdf(data, LIMITS)
    assert parsed.title == "Harbour guide"
    assert [p.number for p in parsed.pages] == [1, 2, 3]
    assert all(p.has_text for p in parsed.pages)
    assert "harbour and its boats" in parsed.pages[0].text
    assert "the first ferry departs at dawn." in parsed.pages[1].text
    assert "lost property" in parsed.pages[2].text
    assert "lost property" not in parsed.pages[1].text


def test_long_wrapped_lines_come_back_as_one_paragraph() -> None:
    sentence = "The harbour master inspects every vessel before it leaves the bay at night. "
    parsed = parse_pdf(pdfs.make_pdf([sentence * 6]), LIMITS)
    assert parsed.pages[0].text == (sentence * 6).strip()


def test_make_pdf_is_deterministic_and_refuses_overflowing_pages() -> None:
    assert pdfs.make_pdf(["Same text."], title="T") == pdfs.make_pdf(["Same text."], title="T")
    with pytest.raises(ValueError, match="too long"):
        pdfs.make_pdf(["word " * 2000])
    with pytest.raises(ValueError, match="Latin-1"):
        pdfs.make_pdf(["\u4e2d\u6587"])


def test_a_pdf_encrypted_with_the_empty_user_password_opens() -> None:
    data = pdfs.encrypted_pdf(["Anyone can read this encrypted page text."], user_password="")
    assert b"/Encrypt" in data
    parsed = parse_pdf(data, LIMITS)
    assert parsed.pages[0].text == "Anyone can read this encrypted page text."


def test_a_page_without_text_among_text_pages_is_flagged_not_fatal() -> None:
    data = pdfs.make_pdf(["A page with plenty of text on it.", "", "Another page with text."])
    parsed = parse_pdf(data, LIMITS)
    assert [p.has_text for p in parsed.pages] == [True, False, True]
    assert parsed.pages_without_text == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (pdfs.empty_bytes(), "empty"),
        (pdfs.html_named_pdf(), "not a PDF"),
        (pdfs.truncated_pdf(), "broken or truncated"),
        (pdfs.corrupt_xref_pdf(), "broken or truncated"),
        (pdfs.encrypted_pdf(["A secret page of text."]), "encrypted with a password"),
        (pdfs.image_only_pdf(), "no text layer"),
        (pdfs.many_pages_pdf(21), "21 pages; the limit is 20"),
    ],
    ids=["empty", "html", "truncated", "corrupt-xref", "encrypted", "image-only", "too-many-pages"],
)
def test_bad_pdfs_get_a_one_line_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadDocumentError) as caught:
        parse_pdf(data, LIMITS)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message and len(message) < 200


def test_size_and_magic_are_checked_before_parsing() -> None:
    small = ParseLimits(max_bytes=1000, max_pages=20, timeout_s=60, memory_mb=2048)
    with pytest.raises(BadDocumentError, match="the limit is"):
        check_pdf_bytes(b"%PDF-1.7\n" + b"x" * 2000, small)
    with pytest.raises(BadDocumentError, match="no %PDF- header"):
        check_pdf_bytes(b"x" * 1024 + b"%PDF-1.7", small.__class__(10_000, 20, 60, 2048))
    check_pdf_bytes(b"\n" * 100 + b"%PDF-1.7\n", LIMITS)  # header within the first 1,024 bytes


def test_a_parse_that_takes_too_long_is_stopped() -> None:
    # A near-zero timeout: the spawned child cannot even start in time.
    hasty = ParseLimits(max_bytes=5_000_000, max_pages=20, timeout_s=0.001, memory_mb=2048)
    with pytest.raises(BadDocumentError, match="longer than"):
        parse_pdf(pdfs.make_pdf(["Some text that takes a while."]), hasty)


def test_pdfium_can_read_the_text_layers_with_pypdf_as_the_fallback() -> None:
    data = pdfs.make_pdf(
        ["Page one talks about the harbour and its boats.", "Page two: the ferry leaves at dawn."],
        title="Harbour guide",
    )
    pdfium_first = replace(LIMITS, text_parser="pdfium")
    parsed = parse_pdf(data, pdfium_first)
    assert parsed.parser == "PDFium" and parsed.title == "Harbour guide"
    assert [p.text for p in parsed.pages] == [p.text for p in parse_pdf(data, LIMITS).pages]
    with pytest.raises(BadDocumentError, match="21 pages; the limit is 20"):
        parse_pdf(pdfs.many_pages_pdf(21), pdfium_first)
    with pytest.raises(BadDocumentError, match="encrypted with a password"):
        parse_pdf(pdfs.encrypted_pdf(["A secret page of text."]), pdfium_first)


def test_a_page_whose_words_pypdf_ran_together_is_read_from_pdfium() -> None:
    glued = ("Note that in Ubuntu the field is general. Packages in Ubuntushouldgenerallyhavethe"
             "Maintainerfieldsetto the team. IftheMaintainerfieldismodified,theoldvalue is kept.")
    spaced = ("Note that in Ubuntu the field is general. Packages in Ubuntu should generally "
              "have the Maintainer field set to the team. If the Maintainer field is modified, "
              "the old value is kept.")
    assert run_together_share(glued) > 0.3 and run_together_share(spaced) == 0
    assert spaced_text(glued, spaced) == spaced
    # Long names with punctuation between their parts are no words run together, and a page
    # that both parsers read the same way keeps pypdf's text.
    names = "The type asn1_get_length_der and https://wiki.debian.org/qa.debian.org/FTBFS stay."
    assert spaced_text(names, names.upper()) == names
    camel = "The ReverseSuffixTreeLeafNode type stores one entry."
    assert spaced_text(camel, camel + " ") == camel
