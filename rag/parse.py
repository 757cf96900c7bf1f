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
from dataclasses import dataclass
from typing import Any

from rag.errors import BadDocumentError
from rag.normalize import normalize_page_text

logger = logging.getLogger(__name__)

PDF_MAGIC = b"%PDF-"
# Fewer characters than this on a page means there is no usable text layer (a scan, a figure).
MIN_PAGE_CHARS = 20


@dataclass(frozen=True, slots=True)
class PageText:
    number: int  # 1-based physical page index
    text: str  # normalised
    has_text: bool


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str
    pages: list[PageText]

    @property
    def pages_without_text(self) -> int:
        return sum(1 for p in self.pages if not p.has_text)


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_bytes: int
    max_pages: int
    timeout_s: float
    memory_mb: int


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


def parse_pdf(data: bytes, limits: ParseLimits) -> ParsedDocument:
    """Parse in a child process; raise BadDocumentError with a one-line reason on any failure."""
    check_pdf_bytes(data, limits)
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
    title, raw_pages = payload
    pages = [
        PageText(number=i + 1, text=text, has_text=len(text) >= MIN_PAGE_CHARS)
        for i, text in enumerate(raw_pages)
    ]
    if not any(p.has_text for p in pages):
        raise BadDocumentError("it has no text layer (a scan or images only); OCR is not supported")
    return ParsedDocument(title=title, pages=pages)


def _child_main(
    sender: multiprocessing.connection.Connection, data: bytes, limits: ParseLimits
) -> None:
    """Entry point of the parse process: send ("ok", (title, pages)) or ("error", reason)."""
    try:
        import resource

        cap = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):  # not on this platform: the timeout still applies
        pass
    try:
        result: tuple[str, Any] = ("ok", extract_pages(data, limits.max_pages))
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


def extract_pages(data: bytes, max_pages: int) -> tuple[str, list[str]]:
    """Read a PDF with pypdf and return (title, normalised text per page). Runs in the child."""
    import io

    try:
        from pypdf import PdfReader
        from pypdf.errors import FileNotDecryptedError, PdfReadError
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise BadDocumentError("pypdf is not installed: pip install pypdf") from exc

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except PdfReadError as exc:
        if _caused_by(exc, RecursionError):
            raise BadDocumentError("the PDF is nested too deeply to read") from None
        raise BadDocumentError(f"the PDF is broken or truncated ({_short(exc)})") from None
    if reader.is_encrypted:
        try:
            decrypted = reader.decrypt("")
        except (FileNotDecryptedError, NotImplementedError) as exc:
            raise BadDocumentError(
                f"it is encrypted and cannot be opened ({_short(exc)})"
            ) from None
        if not decrypted:
            raise BadDocumentError("it is encrypted with a password")
    try:
        page_count = len(reader.pages)
    except FileNotDecryptedError:
        raise BadDocumentError("it is encrypted with a password") from None
    if page_count == 0:
        raise BadDocumentError("it has no pages")
    if page_count > max_pages:
        raise BadDocumentError(f"it has {page_count} pages; the limit is {max_pages}")
    texts = []
    for page in reader.pages:
        try:
            raw = page.extract_text() or ""
        except FileNotDecryptedError:
            raise BadDocumentError("it is encrypted with a password") from None
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:  # one unreadable page should not lose the document
            if _caused_by(exc, RecursionError):
                raise RecursionError from exc
            if type(exc).__name__ == "LimitReachedError" or _caused_by(exc, MemoryError):
                raise BadDocumentError(
                    "a page's content is too large to read (a decompression bomb?)"
                ) from None
            logger.debug("page text failed: %s", exc)
            raw = ""
        texts.append(normalize_page_text(raw))
    title = ""
    try:
        meta = reader.metadata
        if meta is not None and meta.title:
            title = normalize_page_text(str(meta.title))[:200]
    except Exception:
        title = ""
    return title, texts


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
