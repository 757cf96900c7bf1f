"""PDFium (through pypdfium2): the second, independent PDF parser and the page renderer for OCR.

pypdf reads most files; PDFium, the engine of Chrome's PDF viewer, repairs many that pypdf cannot
(a broken cross-reference table, a missing trailer) and draws pages as pixels for the recogniser.
This is the only module that imports pypdfium2. It runs only inside the parse and OCR child
processes, under their time and memory limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rag.errors import BadDocumentError

# PDFium's error code for "a password is needed" (FPDF_ERR_PASSWORD).
_ERR_PASSWORD = 4
# At most this many page objects are looked at per page when looking for images: a page made of
# 100,000 tiny objects must not make the look itself a denial of service.
MAX_OBJECTS_PER_PAGE = 2000
_LINE_BREAK_HYPHEN = "\ufffe"


@dataclass(frozen=True, slots=True)
class ImageBox:
    """Where an embedded image is drawn, as fractions of the page (0..1, top-left origin)."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def area(self) -> float:
        return max(0.0, self.right - self.left) * max(0.0, self.bottom - self.top)


@dataclass(frozen=True, slots=True)
class PageLayout:
    """What PDFium sees on one page: its text layer, its size and the images drawn on it."""

    text: str
    width_pt: float
    height_pt: float
    rotated: bool
    images: tuple[ImageBox, ...]

    @property
    def image_coverage(self) -> float:
        """The share of the page the images cover (overlaps counted once at most, capped at 1)."""
        return min(1.0, sum(box.area for box in self.images))


def _module() -> Any:
    try:
        import pypdfium2
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise BadDocumentError("pypdfium2 is not installed: pip install pypdfium2") from exc
    return pypdfium2


def open_document(data: bytes) -> Any:
    """Open with the empty user password (owner-password and permission-locked files open)."""
    pdfium = _module()
    try:
        return pdfium.PdfDocument(data, password=None)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == _ERR_PASSWORD:
            raise BadDocumentError(
                "it needs a password to open (encrypted with a password)"
            ) from None
        raise BadDocumentError(f"PDFium cannot read it ({_reason(exc)})") from None


def document_title(document: Any) -> str:
    """The Title of the document information dictionary, or "" (PDFium raises on odd ones)."""
    pdfium = _module()
    try:
        return str(document.get_metadata_value("Title") or "")
    except (pdfium.PdfiumError, KeyError, ValueError, UnicodeError):
        return ""


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.replace("Failed to load document ", "").strip("(). ")[:100]


def page_layouts(document: Any, max_pages: int) -> Iterator[PageLayout]:
    """Each page's text layer, size and image boxes, in page order."""
    pdfium = _module()
    count = len(document)
    if count > max_pages:
        raise BadDocumentError(f"it has {count} pages; the limit is {max_pages}")
    for index in range(count):
        page = document[index]
        try:
            yield _layout(pdfium, page)
        finally:
            page.close()


def _layout(pdfium: Any, page: Any) -> PageLayout:
    left, bottom, right, top = page.get_bbox()
    width, height = max(right - left, 1e-3), max(top - bottom, 1e-3)
    try:
        textpage = page.get_textpage()
        try:
            # PDFium marks a word hyphenated across a line break with U+FFFE where the hyphen
            # was; the word is one word ("surround\ufffeing" would embed and match as two).
            text = textpage.get_text_range().replace(_LINE_BREAK_HYPHEN, "")
        finally:
            textpage.close()
    except pdfium.PdfiumError:
        text = ""
    boxes = []
    image_type = pdfium.raw.FPDF_PAGEOBJ_IMAGE
    for seen, obj in enumerate(page.get_objects(filter=[image_type], max_depth=4)):
        if seen >= MAX_OBJECTS_PER_PAGE:
            break
        try:
            x0, y0, x1, y1 = obj.get_bounds()
        except pdfium.PdfiumError:
            continue
        box = ImageBox(
            left=_clip((x0 - left) / width),
            top=_clip((top - y1) / height),
            right=_clip((x1 - left) / width),
            bottom=_clip((top - y0) / height),
        )
        if box.area > 0:
            boxes.append(box)
    return PageLayout(
        text=text,
        width_pt=width,
        height_pt=height,
        rotated=page.get_rotation() % 360 != 0,
        images=tuple(boxes),
    )


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def render_page(document: Any, index: int, dpi: float, max_pixels: int) -> Any:
    """Draw one page (0-based) as an RGB numpy array at `dpi`, scaled down to `max_pixels`."""
    page = document[index]
    try:
        width, height = page.get_size()
        scale = dpi / 72.0
        pixels = width * scale * height * scale
        if pixels > max_pixels:
            scale *= (max_pixels / pixels) ** 0.5
        bitmap = page.render(scale=scale, rev_byteorder=True, limit_image_cache=True)
        try:
            return bitmap.to_numpy().copy()
        finally:
            bitmap.close()
    finally:
        page.close()
