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
    "aes_encrypted_pdf",
    "corrupt_xref_pdf",
    "empty_bytes",
    "encrypted_pdf",
    "figure_pdf",
    "html_named_pdf",
    "image_only_pdf",
    "make_pdf",
    "many_pages_pdf",
    "scanned_pdf",
    "text_image",
    "truncated_pdf",
    "truncated_xref_pdf",
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


def truncated_xref_pdf(pages: Sequence[str]) -> bytes:
    """A real PDF whose cross-reference table and trailer are cut off (a damaged file whose
    objects are all still there)."""
    data = make_pdf(pages)
    return data[: data.rindex(b"xref")]


def aes_encrypted_pdf(pages: Sequence[str], *, user_password: str, owner_password: str) -> bytes:
    """An AES-256 encrypted PDF made with pypdf; with user_password="" anyone may open it but
    the owner password locks its permissions (no copying, no printing, no text access)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.encrypt(
        user_password=user_password,
        owner_password=owner_password,
        algorithm="AES-256",
        permissions_flag=0,
    )
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _rendered_pages(data: bytes, dpi: int) -> list[object]:
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        return [document[i].render(scale=dpi / 72).to_pil() for i in range(len(document))]
    finally:
        document.close()


def scanned_pdf(
    pages: Sequence[str], *, dpi: int = 150, rotate: float = 1.5, blur: float = 0.6
) -> bytes:
    """A scan of `make_pdf(pages)`: each page drawn to pixels, turned a little, blurred a
    little, and put back as the only thing on an image-only page (no text layer at all)."""
    from PIL import ImageFilter

    pdf = _document("")
    for image in _rendered_pages(make_pdf(pages), dpi):
        grey = image.convert("L")  # type: ignore[attr-defined]
        tilted = grey.rotate(rotate, expand=False, fillcolor=255, resample=3)
        buffer = io.BytesIO()
        tilted.filter(ImageFilter.GaussianBlur(blur)).save(buffer, format="PNG")
        buffer.seek(0)
        pdf.add_page()
        pdf.image(buffer, x=0, y=0, w=210, h=297)
    return bytes(pdf.output())


def text_image(lines: Sequence[str], *, size: tuple[int, int] = (900, 420)) -> bytes:
    """A PNG of dark words on a light box (a figure, a diagram label, a screenshot)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, (245, 245, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, size[0] - 8, size[1] - 8), outline=(60, 60, 60), width=3)
    font = ImageFont.load_default(size=40)
    for row, line in enumerate(lines):
        draw.text((40, 40 + row * 70), line, fill=(20, 20, 20), font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def figure_pdf(text: str, figure_lines: Sequence[str]) -> bytes:
    """One text page with a raster figure (whose words exist only as pixels) below the text."""
    pdf = _document("")
    pdf.add_page()
    pdf.multi_cell(0, 6, text)
    pdf.image(io.BytesIO(text_image(figure_lines)), x=20, y=pdf.get_y() + 10, w=170)
    return bytes(pdf.output())
