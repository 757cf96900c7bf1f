"""Small real PDFs built in the test itself (fpdf2), good and bad, for every test suite.

Tests never read PDFs from outside the repository: each one builds exactly the document it needs,
with known text on known pages. Import it as a top-level module after putting `tests/` on
sys.path (tests/rag/conftest.py and tests/cli/conftest.py do that):

    from pdfs import make_pdf

The fpdf2 core fonts are Latin-1 only, so page text must be Latin-1; `make_pdf` raises ValueError
otherwise rather than letting fpdf2 write a document with missing glyphs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from fpdf import FPDF

__all__ = [
    "corrupt_xref_pdf",
    "empty_bytes",
    "encrypted_pdf",
    "html_named_pdf",
    "image_only_pdf",
    "make_pdf",
    "many_pages_pdf",
    "truncated_pdf",
]


def _document(title: str) -> FPDF:
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_font("Helvetica", size=11)
    if title:
        pdf.set_title(title)
    # Fixed dates keep the bytes (and so the sha256) of a document a pure function of its inputs.
    from datetime import UTC, datetime

    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=UTC))
    return pdf


def _write_pages(pdf: FPDF, pages: Sequence[str]) -> None:
    for text in pages:
        try:
            text.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ValueError(f"page text must be Latin-1 for the core fonts: {exc}") from None
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 6, text)


def make_pdf(
    pages: Sequence[str],
    *,
    title: str = "",
    user_password: str | None = None,
    owner_password: str | None = None,
) -> bytes:
    """A PDF with one physical page per entry of `pages`, each holding exactly that text.

    Blank lines in a page's text become paragraph breaks. Text must fit on one A4 page (about
    600 words); a longer text would spill onto an extra page and shift every page number after
    it, so that raises ValueError. With `owner_password` (and optionally `user_password`, which
    may be "" for a document anyone can open) the PDF is RC4-encrypted.
    """
    pdf = _document(title)
    if owner_password is not None:
        pdf.set_encryption(owner_password=owner_password, user_password=user_password or "")
    _write_pages(pdf, pages)
    if pdf.pages_count != max(len(pages), 0):
        raise ValueError(
            f"{len(pages)} page texts produced {pdf.pages_count} pages: a text is too long"
        )
    return bytes(pdf.output())


def encrypted_pdf(pages: Sequence[str], *, user_password: str = "secret") -> bytes:
    """An encrypted PDF; with user_password="" it opens without a password (and should ingest)."""
    return make_pdf(
        pages, owner_password="owner-" + (user_password or "x"), user_password=user_password
    )


def many_pages_pdf(
    count: int, *, words: str = "This page is filler text for the page limit."
) -> bytes:
    """A PDF of `count` short pages of text (to go over a page limit)."""
    return make_pdf([f"Page {n}. {words}" for n in range(1, count + 1)])


def image_only_pdf(pages: int = 1) -> bytes:
    """A scan-like PDF: every page is one grey image and there is no text layer at all."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (200, 280), (200, 200, 200)).save(buffer, format="PNG")
    pdf = _document("")
    for _ in range(pages):
        pdf.add_page()
        buffer.seek(0)
        pdf.image(buffer, x=10, y=10, w=180)
    return bytes(pdf.output())


def empty_bytes() -> bytes:
    """A zero-byte file named .pdf."""
    return b""


def html_named_pdf() -> bytes:
    """A web page saved with a .pdf name (a common mistake: a download that was a login page)."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
        b"<body><p>Please sign in to download this report.</p></body></html>\n"
    )


def truncated_pdf(
    pages: Sequence[str] = ("A page that will be cut off half way through.",),
) -> bytes:
    """A real PDF cut to its first 40% (an interrupted download)."""
    data = make_pdf(pages)
    return data[: int(len(data) * 0.4)]


def corrupt_xref_pdf() -> bytes:
    """The %PDF- header followed by garbage: no objects, no xref table, no trailer."""
    filler = bytes((i * 37 + 11) % 256 for i in range(4096))
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + filler + b"\nstartxref\n999999\n%%EOF\n"
