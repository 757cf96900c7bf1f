"""PDF → per-page text, in a separate process with a time and memory limit.

pypdf is pure Python and has had denial-of-service bugs (infinite loops, decompression bombs, huge
content streams), so a thread is not enough: the parse runs in a child process that is killed when
it hits the wall-clock limit, and whose address space is capped with RLIMIT_AS.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import multiprocessing.connection
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.errors import BadDocumentError
from rag.normalize import normalize_page_text
from rag.ocr import OcrOptions, OcrResult, OcrTask, ProgressCallback, read_images
from rag.ocr import unavailable_reason as ocr_unavailable
from rag.pdfium import ImageBox

logger = logging.getLogger(__name__)

PDF_MAGIC = b"%PDF-"
# A page with fewer characters than this in its text layer and an image over at least
# SCAN_COVERAGE of it is a scan: it is read from its image. A short page without images is
# simply short ("Hello world"), and goes in as it is.
MIN_PAGE_CHARS = 20
SCAN_COVERAGE = 0.25
# An image covering this much of a text page is a page-sized background (a scan that already has
# a text layer): its words are in that layer, so it is not read again as a figure.
BACKGROUND_COVERAGE = 0.8
# A document with less text than this (over all pages) is indexed with a warning.
NEARLY_EMPTY_CHARS = 100


TextParser = Literal["pypdf", "pdfium"]


@dataclass(frozen=True, slots=True)
class PageText:
    number: int  # 1-based physical page index
    text: str  # normalised text layer
    has_text: bool  # any text at all, from the text layer or an image
    image_text: str = ""  # normalised text read from the page's image or figures (OCR)
    scanned: bool = False  # the whole page was read from its image (no usable text layer)

    @property
    def stored_text(self) -> str:
        """Everything a reader can see on the page: quotes are verified against this."""
        return "\n\n".join(part for part in (self.text, self.image_text) if part)


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str
    pages: list[PageText]
    parser: str = "pypdf"  # which parser read the text layer: "pypdf" or "PDFium"
    warnings: tuple[str, ...] = ()  # one line each: pages skipped and why, a second parser, ...
    ocr_seconds: float = 0.0  # time the recogniser spent on this file's pages

    @property
    def pages_without_text(self) -> int:
        return sum(1 for p in self.pages if not p.has_text)

    @property
    def pages_from_images(self) -> int:
        """Pages with text read from an image (whole scans and figures of text pages)."""
        return sum(1 for p in self.pages if p.image_text)


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_bytes: int
    max_pages: int
    timeout_s: float
    memory_mb: int
    ocr: OcrOptions = field(default_factory=OcrOptions)
    # Which parser reads the text layers; the other one is the fallback. PDFium reads them
    # ~8x faster (it opens every file anyway, for the page images); with PDFium first, pypdf
    # still opens every file and inflates its content streams (a cheap structural check), so
    # hostile files are refused exactly as with pypdf first.
    text_parser: TextParser = "pypdf"


@dataclass(frozen=True, slots=True)
class RawPage:
    """One page as the parse child sends it: text layer and where its images are."""

    text: str
    images: tuple[ImageBox, ...] = ()
    rotated: bool = False

    @property
    def image_coverage(self) -> float:
        return min(1.0, sum(box.area for box in self.images))


@dataclass(frozen=True, slots=True)
class RawDocument:
    title: str
    pages: list[RawPage]
    parser: str
    note: str = ""  # why the second parser was used
    renderable: bool = True  # PDFium opened it, so its pages can be drawn for OCR


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_pdf_bytes(data: bytes, limits: ParseLimits) -> None:
    """Cheap checks done before anything is parsed: size and the %PDF- magic bytes."""
    if not data:
        raise BadDocumentError("the file is empty")
    if len(data) > limits.max_bytes:
        raise BadDocumentError(
            f"the file is {len(data) / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.0f} MB"
        )
    # The PDF spec allows the header anywhere in the first 1,024 bytes.
    if PDF_MAGIC not in data[:1024]:
        raise BadDocumentError("not a PDF (it has no %PDF- header)")


def parse_pdf(
    data: bytes,
    limits: ParseLimits,
    on_ocr_progress: ProgressCallback | None = None,
    ocr_turn: AbstractContextManager[Any] | None = None,
) -> ParsedDocument:
    """Parse in a child process, then read scanned pages (and, if allowed, figures) from their
    images in a limited OCR child; raise BadDocumentError with a one-line reason if nothing
    readable comes out. Files parsed at once share `ocr_turn` (a lock): an OCR child peaks near
    1 GB and uses its own threads, so only one runs at a time."""
    check_pdf_bytes(data, limits)
    raw = _read_in_child(data, limits)

    def ocr(tasks: list[OcrTask]) -> list[OcrResult]:
        with ocr_turn or nullcontext():
            return _ocr(data, tasks, limits.ocr, on_ocr_progress)

    return assemble(raw, limits.ocr, ocr)


def _ocr(
    data: bytes, tasks: list[OcrTask], options: OcrOptions, on_progress: ProgressCallback | None
) -> list[OcrResult]:
    return read_images(data, tasks, options, on_progress) if tasks else []


def plan_ocr(raw: RawDocument, options: OcrOptions) -> tuple[list[OcrTask], list[int]]:
    """The pages to read from images: scans first, then figures of text pages, in page order,
    within the per-file page budget. Returns (tasks, scanned pages over the budget or not read
    because OCR is off)."""
    scans: list[OcrTask] = []
    figures: list[OcrTask] = []
    for number, page in enumerate(raw.pages, start=1):
        if not raw.renderable:
            break
        if len(page.text.strip()) < MIN_PAGE_CHARS:
            if page.image_coverage >= SCAN_COVERAGE:
                scans.append(OcrTask(number))
        elif options.figures and not page.rotated:
            boxes = tuple(
                box
                for box in page.images
                if options.figure_min_area <= box.area < BACKGROUND_COVERAGE
            )
            if boxes:
                figures.append(OcrTask(number, boxes))
    if not options.enabled:
        return [], [t.page for t in scans]
    budget = max(0, options.max_pages)
    return (scans + figures)[:budget], [t.page for t in scans[budget:]]


def assemble(
    raw: RawDocument,
    options: OcrOptions,
    ocr: Callable[[list[OcrTask]], list[OcrResult]],
) -> ParsedDocument:
    """Pages from the text layers plus what OCR read; the one-line refusal when nothing is
    readable; warnings for what was skipped."""
    tasks, unread_scans = plan_ocr(raw, options)
    unavailable = ocr_unavailable() if tasks else None
    results = {r.page: r for r in ocr(tasks)} if tasks and unavailable is None else {}
    warnings: list[str] = []
    if raw.note:
        warnings.append(raw.note)
    pages: list[PageText] = []
    for number, page in enumerate(raw.pages, start=1):
        result = results.get(number)
        image_text = normalize_page_text(result.text) if result is not None else ""
        scanned = bool(image_text) and result is not None and result.whole_page
        pages.append(
            PageText(
                number=number,
                text=page.text,
                has_text=bool(page.text.strip() or image_text),
                image_text=image_text,
                scanned=scanned,
            )
        )
    scan_tasks = [t for t in tasks if t.whole_page]
    if not any(p.has_text for p in pages):
        raise BadDocumentError(
            _no_text_reason(raw, options, scan_tasks, unread_scans, unavailable, results)
        )
    # A figure without words is normal; a scanned page that gave nothing, or any failure, is not.
    skipped = [
        r for r in results.values() if r.skipped and (r.whole_page or "no text" not in r.skipped)
    ]
    if skipped:
        first = skipped[0]
        pages_list = ", ".join(str(r.page) for r in skipped[:8])
        more = "…" if len(skipped) > 8 else ""
        warnings.append(
            f"{len(skipped)} page image(s) not read (p. {pages_list}{more}; "
            f"p. {first.page}: {first.skipped})"
        )
    if unavailable and tasks:
        warnings.append(f"{len(tasks)} page image(s) not read: {unavailable}")
    if unread_scans:
        why = (
            "OCR is off (ingest.ocr = false)"
            if not options.enabled
            else f"over the per-file OCR budget of {options.max_pages} pages"
        )
        warnings.append(f"{len(unread_scans)} scanned page(s) not read: {why}")
    characters = sum(len(p.stored_text) for p in pages)
    if characters < NEARLY_EMPTY_CHARS:
        warnings.append(f"it is nearly empty (only {characters} characters of text)")
    return ParsedDocument(
        title=raw.title,
        pages=pages,
        parser=raw.parser,
        warnings=tuple(warnings),
        ocr_seconds=sum(r.seconds for r in results.values()),
    )


def _no_text_reason(
    raw: RawDocument,
    options: OcrOptions,
    scan_tasks: list[OcrTask],
    unread_scans: list[int],
    unavailable: str | None,
    results: dict[int, OcrResult],
) -> str:
    scans = len(scan_tasks) + len(unread_scans)
    if not scans:
        if not raw.renderable and any(p.images for p in raw.pages):
            return "it has no text layer, and its pages cannot be drawn for OCR"
        return f"it has no text at all ({len(raw.pages)} blank page(s))"
    if not options.enabled:
        return f"it has no text layer ({scans} scanned page(s)) and OCR is off (ingest.ocr = false)"
    if unavailable:
        return f"it has no text layer ({scans} scanned page(s)) and {unavailable}"
    reasons = [results[t.page].skipped for t in scan_tasks if t.page in results]
    failed = [r for r in reasons if r and "no text" not in r]
    if failed:
        return f"it has no text layer, and OCR failed on its {scans} page image(s) ({failed[0]})"
    unsure = [r for r in reasons if "confidence" in r]
    if unsure:
        return f"it has no text layer, and in its {scans} page image(s) {unsure[0]}"
    return f"it has no text layer, and OCR found no readable text in its {scans} page image(s)"


def _read_in_child(data: bytes, limits: ParseLimits) -> RawDocument:
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child_main, args=(sender, data, limits), name="folio-parse", daemon=True
    )
    child.start()
    sender.close()
    try:
        ready = multiprocessing.connection.wait([receiver, child.sentinel], limits.timeout_s)
        if not ready:
            raise BadDocumentError(
                f"parsing took longer than {limits.timeout_s:.0f} s and was stopped"
            )
        try:
            kind, payload = receiver.recv()
        except (EOFError, OSError):
            child.join(5)
            if child.exitcode is not None and child.exitcode < 0:
                reason = "the parser was killed (too much memory or a malformed file)"
            else:
                reason = "the parser ran out of memory or crashed"
            raise BadDocumentError(reason) from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if kind == "error":
        raise BadDocumentError(str(payload))
    raw: RawDocument = payload
    return raw


def _child_main(
    sender: multiprocessing.connection.Connection, data: bytes, limits: ParseLimits
) -> None:
    """Entry point of the parse process: send ("ok", RawDocument) or ("error", reason)."""
    try:
        import resource

        cap = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):  # not on this platform: the timeout still applies
        pass
    try:
        result: tuple[str, Any] = (
            "ok", read_document(data, limits.max_pages, limits.text_parser)
        )
    except BadDocumentError as exc:
        result = ("error", exc.message)
    except MemoryError:
        result = ("error", "parsing needed more memory than allowed (a decompression bomb?)")
    except RecursionError:
        result = ("error", "the PDF is nested too deeply to read")
    except Exception as exc:  # pypdf raises many types on malformed input
        if _caused_by(exc, RecursionError):  # pypdf wraps it in PdfReadError
            result = ("error", "the PDF is nested too deeply to read")
        else:
            result = ("error", f"the PDF is broken or truncated ({_short(exc)})")
    try:
        sender.send(result)
    finally:
        sender.close()


class _Final(BadDocumentError):
    """A refusal no second parser can change: a password, too many pages, a bomb, nesting."""


def _pypdf_reason(exc: Exception) -> str:
    """Why pypdf could not read the file (then PDFium may still read it, with this as the note);
    what must end the parse instead is raised again: a final refusal, memory, deep nesting."""
    if isinstance(exc, _Final | MemoryError | RecursionError):
        raise exc
    if isinstance(exc, BadDocumentError):
        return exc.message
    if _caused_by(exc, RecursionError):  # pypdf wraps it in PdfReadError
        raise _Final("the PDF is nested too deeply to read") from None
    return f"the PDF is broken or truncated ({_short(exc)})"


def read_document(data: bytes, max_pages: int, text_parser: TextParser = "pypdf") -> RawDocument:
    """Text layers by PDFium, guarded by pypdf's structural check (or by pypdf, with PDFium as
    the second parser, with text_parser = "pypdf"); image boxes by PDFium. Runs in the parse
    child."""
    from rag import pdfium

    if text_parser == "pdfium":
        read = _read_pdfium_first(data, max_pages)
        if read is not None:
            return read
    pypdf_error = ""
    title, texts, failed = "", list[str](), set[int]()
    try:
        title, texts, failed = extract_pages(data, max_pages)
    except Exception as exc:  # pypdf raises many types on malformed input
        pypdf_error = _pypdf_reason(exc)
    layouts: list[pdfium.PageLayout] | None = None
    document = None
    try:
        document = pdfium.open_document(data)
        layouts = list(pdfium.page_layouts(document, max_pages))
    except BadDocumentError as exc:
        if pypdf_error:
            if "password" in exc.message:
                raise BadDocumentError(exc.message) from None
            raise BadDocumentError(
                f"it is damaged beyond repair: {pypdf_error[:110]}, and PDFium cannot read it"
            ) from None
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # PDFium on a hostile file: the text layer from pypdf still counts
        if pypdf_error:
            raise BadDocumentError(
                f"it is damaged beyond repair: {pypdf_error[:110]}, and PDFium failed "
                f"({_short(exc)[:40]})"
            ) from None
        layouts = None
    finally:
        if document is not None:
            document.close()
    if pypdf_error:
        assert layouts is not None
        if not layouts:
            raise BadDocumentError("it has no pages")
        pages = [RawPage(normalize_page_text(p.text), p.images, p.rotated) for p in layouts]
        return RawDocument(
            title="",
            pages=pages,
            parser="PDFium",
            note=f"read by PDFium (pypdf could not: {pypdf_error[:110]})",
        )
    if layouts is None or len(layouts) != len(texts):
        # PDFium disagrees about the pages (or could not open the file): use pypdf alone, with
        # no images to read.
        return RawDocument(title, [RawPage(t) for t in texts], "pypdf", renderable=False)
    pages = []
    for index, (text, layout) in enumerate(zip(texts, layouts, strict=True)):
        if index in failed and layout.text.strip():
            text = normalize_page_text(layout.text)  # pypdf failed on this page, PDFium did not
        elif layout.text.strip() and run_together_share(text) > MAX_RUN_TOGETHER_SHARE:
            text = spaced_text(text, normalize_page_text(layout.text))  # checked before normalising
        pages.append(RawPage(text, layout.images, layout.rotated))
    return RawDocument(title, pages, "pypdf")


# Letters in runs this long without a space are words run together ("Packagesin
# Ubuntushouldgenerallyhave..."): pypdf reads some justified text that way, PDFium with spaces.
# English words this long are rare ("internationalisation"); identifiers and URLs have
# punctuation between their parts.
_RUN_TOGETHER = re.compile(r"[^\W\d_]{20,}")
# A page with more of its letters in such runs reads its text from PDFium, if PDFium's has less
# than half the share. Measured: 37 of the Ubuntu Packaging Guide's 51 pages, no page of the
# twelve dev documents.
MAX_RUN_TOGETHER_SHARE = 0.02


def run_together_share(text: str) -> float:
    """The share of the text's characters that sit in runs of 20 or more letters."""
    return sum(len(run) for run in _RUN_TOGETHER.findall(text)) / len(text) if text else 0.0


def spaced_text(pypdf_text: str, pdfium_text: str) -> str:
    """pypdf's text of a page, or PDFium's where pypdf ran its words together
    ("IftheMaintainerfieldismodified,theoldvalue...") and PDFium did so less than half as often."""
    if run_together_share(pypdf_text) <= MAX_RUN_TOGETHER_SHARE:
        return pypdf_text
    if run_together_share(pdfium_text) < run_together_share(pypdf_text) / 2:
        return pdfium_text
    return pypdf_text


def _read_pdfium_first(data: bytes, max_pages: int) -> RawDocument | None:
    """PDFium's text layers, after pypdf has opened the file and inflated its content streams
    (`check_structure`): a password, too many pages, deep nesting or a decompression bomb is
    refused with pypdf's reason, as with pypdf first; a file pypdf cannot open but PDFium can
    is read with a note. Pages where PDFium finds (almost) no text are read by pypdf too, and
    the longer text wins. None: PDFium cannot open the file or disagrees about the pages, and
    the pypdf-first path decides (with its own reasons)."""
    reader: Any = None
    pypdf_error = ""
    try:
        reader = check_structure(data, max_pages)
    except Exception as exc:  # pypdf raises many types on malformed input
        pypdf_error = _pypdf_reason(exc)
    read = _read_with_pdfium(data, max_pages)
    if read is None:
        return None
    if pypdf_error:
        return RawDocument(
            read.title,
            read.pages,
            "PDFium",
            note=f"read by PDFium (pypdf could not: {pypdf_error[:110]})",
        )
    if len(reader.pages) != len(read.pages):
        return None
    pages = list(read.pages)
    for index, page in enumerate(pages):
        if len(page.text.strip()) < MIN_PAGE_CHARS:
            text, _failed = _page_text(reader.pages[index])
            if len(text.strip()) > len(page.text.strip()):
                pages[index] = RawPage(text, page.images, page.rotated)
    return RawDocument(read.title, pages, "PDFium")


def _read_with_pdfium(data: bytes, max_pages: int) -> RawDocument | None:
    """Text layers, title and image boxes from PDFium alone; None when PDFium cannot open the
    file (pypdf then reads it, as the second parser). A password or too many pages is final."""
    from rag import pdfium

    try:
        document = pdfium.open_document(data)
    except BadDocumentError as exc:
        if "password" in exc.message:
            raise _Final(exc.message) from None
        return None
    except (MemoryError, RecursionError):
        raise
    except Exception:  # PDFium on a hostile file: pypdf gets its turn
        return None
    try:
        try:
            layouts = list(pdfium.page_layouts(document, max_pages))
        except BadDocumentError as exc:
            raise _Final(exc.message) from None
        title = normalize_page_text(pdfium.document_title(document))[:200]
    finally:
        document.close()
    if not layouts:
        return None
    pages = [RawPage(normalize_page_text(p.text), p.images, p.rotated) for p in layouts]
    return RawDocument(title, pages, "PDFium")


_PASSWORD = "it needs a password to open (encrypted with a password)"
# Content streams and form XObjects inflated per file by `check_structure` at most: enough for
# any real document (the six eval papers have 2 to 68 pages, one or two streams each), and a file
# of 100,000 tiny forms cannot make the check itself slow.
MAX_CHECKED_STREAMS = 20_000


def _pypdf() -> tuple[Any, Any, Any]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import FileNotDecryptedError, PdfReadError
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise BadDocumentError("pypdf is not installed: pip install pypdf") from exc
    return PdfReader, FileNotDecryptedError, PdfReadError


def _open_with_pypdf(data: bytes, max_pages: int) -> Any:
    """pypdf's reader of a file whose cross-reference table, trailer, encryption and page tree
    it could read; `_Final` for a password or too many pages, BadDocumentError if broken."""
    import io

    reader_type, not_decrypted, read_error = _pypdf()
    try:
        reader = reader_type(io.BytesIO(data), strict=False)
    except read_error as exc:
        if _caused_by(exc, RecursionError):
            raise _Final("the PDF is nested too deeply to read") from None
        raise BadDocumentError(f"the PDF is broken or truncated ({_short(exc)})") from None
    if reader.is_encrypted:
        try:
            decrypted = reader.decrypt("")
        except (not_decrypted, NotImplementedError) as exc:
            raise BadDocumentError(
                f"it is encrypted and pypdf cannot open it ({_short(exc)})"
            ) from None
        if not decrypted:
            raise _Final(_PASSWORD)
    try:
        page_count = len(reader.pages)
    except not_decrypted:
        raise _Final(_PASSWORD) from None
    if page_count == 0:
        raise BadDocumentError("it has no pages")
    if page_count > max_pages:
        raise _Final(f"it has {page_count} pages; the limit is {max_pages}")
    return reader


def check_structure(data: bytes, max_pages: int) -> Any:
    """pypdf's guard for a file whose text PDFium reads: open it (cross-references, encryption,
    page tree: deep nesting surfaces here) and inflate every page's content streams and form
    XObjects under pypdf's output limit (a decompression bomb surfaces here), without reading
    any text: ~0.1 CPU s for the six eval papers, against ~7 for pypdf's text extraction.
    Returns the open reader; raises like `extract_pages`."""
    reader = _open_with_pypdf(data, max_pages)
    budget = [MAX_CHECKED_STREAMS]
    seen: set[int] = set()
    for page in reader.pages:
        try:
            _inflate(page.get("/Contents"), page.get("/Resources"), seen, budget, depth=0)
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:
            if _caused_by(exc, RecursionError):
                raise RecursionError from exc
            if type(exc).__name__ == "LimitReachedError" or _caused_by(exc, MemoryError):
                raise _Final(
                    "a page's content is too large to read (a decompression bomb?)"
                ) from None
            # Any other stream fault: PDFium's text for the page stands, as pypdf's text
            # extraction would have skipped the page too.
            logger.debug("structural check of a page failed: %s", exc)
        if budget[0] <= 0:
            break
    return reader


def _inflate(contents: Any, resources: Any, seen: set[int], budget: list[int], depth: int) -> None:
    """Decode the content stream(s) and, recursively (4 levels, each object once), the form
    XObjects in `resources`: what pypdf's text extraction would decode."""
    from pypdf.generic import ArrayObject, IndirectObject, StreamObject

    def visit(value: Any) -> Any:
        if isinstance(value, IndirectObject):
            if value.idnum in seen:
                return None
            seen.add(value.idnum)
        return value.get_object() if value is not None else None

    contents = visit(contents) if contents is not None else None
    streams = contents if isinstance(contents, ArrayObject) else [contents]
    for item in streams:
        stream = visit(item) if isinstance(item, IndirectObject) else item
        if isinstance(stream, StreamObject) and budget[0] > 0:
            budget[0] -= 1
            stream.get_data()
    resources = resources.get_object() if resources is not None else None
    if depth >= 4 or not hasattr(resources, "get"):
        return
    entry = resources.get("/XObject")
    xobjects: Any = entry.get_object() if entry is not None else None
    if not hasattr(xobjects, "values"):
        return
    for ref in list(xobjects.values()):
        if budget[0] <= 0:
            return
        if isinstance(ref, IndirectObject) and ref.idnum in seen:
            continue
        form = ref.get_object()
        if isinstance(form, StreamObject) and form.get("/Subtype") == "/Form":
            _inflate(ref, form.get("/Resources"), seen, budget, depth + 1)


def _page_text(page: Any) -> tuple[str, bool]:
    """One page's normalised text by pypdf, and whether reading it failed (the file's refusals
    raised as `_Final`)."""
    _reader, not_decrypted, _error = _pypdf()
    try:
        raw = page.extract_text() or ""
    except not_decrypted:
        raise _Final(_PASSWORD) from None
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # one unreadable page should not lose the document
        if _caused_by(exc, RecursionError):
            raise RecursionError from exc
        if type(exc).__name__ == "LimitReachedError" or _caused_by(exc, MemoryError):
            raise _Final("a page's content is too large to read (a decompression bomb?)") from None
        logger.debug("page text failed: %s", exc)
        return "", True
    return normalize_page_text(raw), False


def extract_pages(data: bytes, max_pages: int) -> tuple[str, list[str], set[int]]:
    """Read a PDF with pypdf: (title, normalised text per page, 0-based pages that failed)."""
    reader = _open_with_pypdf(data, max_pages)
    texts = []
    failed: set[int] = set()
    for index, page in enumerate(reader.pages):
        text, page_failed = _page_text(page)
        if page_failed:
            failed.add(index)
        texts.append(text)
    title = ""
    try:
        meta = reader.metadata
        if meta is not None and meta.title:
            title = normalize_page_text(str(meta.title))[:200]
    except Exception:
        title = ""
    return title, texts, failed


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `kind` is somewhere in the exception's chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]
