"""Platform-neutral text for replies: answers with citations, ingest summaries, status lines, and
splitting long text into messages under a platform's limit. Adapters add only their own markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rag.types import OCR_PROGRESS_PREFIX, Answer, Citation, IngestReport

STATUS_SEARCHING = "searching the documents…"
STATUS_WRITING = "writing…"
SHORTENED_MARK = "(answer shortened)"
ABSTAIN_TEXT = "The documents don't say."


def format_eta(seconds: float) -> str:
    """A rough human duration: "~8s", "~3 min"."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"~{max(1, round(seconds))}s"
    return f"~{round(seconds / 60)} min"


def render_queued(position: int, eta_s: float) -> str:
    return f"queued (position {position}, {format_eta(eta_s)})"


def render_citations(answer: Answer) -> str:
    """Distinct cited pages in order, e.g. "[guide.pdf p.13] [guide.pdf p.14]"."""
    seen: list[str] = []
    for citation in answer.citations:
        rendered = citation.render()
        if rendered not in seen:
            seen.append(rendered)
    return " ".join(seen)


def render_stored_citation(stored: Mapping[str, Any]) -> str:
    """A citation kept as a dict (history, a stored reply) rendered like a live one."""
    try:
        page = int(stored.get("page") or 0)
    except (TypeError, ValueError):
        page = 0
    citation = Citation(str(stored.get("document")), page, "", bool(stored.get("from_image")))
    return citation.render()


def render_answer(answer: Answer) -> str:
    """The final reply: the answer, a shortened mark if trimmed, then its sources.

    An abstention names the closest pages instead, so the user knows where to look.
    """
    if answer.abstained:
        closest = answer.closest_pages()
        if not closest:
            return ABSTAIN_TEXT
        pages = ", ".join(f"{document} p.{page}" for document, page in closest)
        return f"{ABSTAIN_TEXT} Closest: {pages}."
    text = answer.text.strip()
    if answer.shortened:
        text = f"{text} {SHORTENED_MARK}"
    sources = render_citations(answer)
    return f"{text}\n\nSources: {sources}" if sources else text


def render_ingest(report: IngestReport) -> str:
    """Files, pages, chunks, duplicates and failures (with reasons) of one ingest."""
    added = report.added
    from_images = f" ({report.ocr_pages} read from images)" if report.ocr_pages else ""
    lines = [
        f"Indexed {len(added)} of {report.files} file(s): {report.pages} pages{from_images}, "
        f"{report.chunks} chunks ({report.seconds:.1f}s)."
    ]
    if report.duplicates:
        names = ", ".join(o.name for o in report.duplicates)
        lines.append(f"Already indexed, skipped: {names}.")
    # What went in with a caveat (pages read by OCR or skipped, a second parser, nearly empty).
    lines.extend(f"Note: {o.name}: {o.reason}" for o in added if o.reason)
    lines.extend(f"Failed: {o.name}: {o.reason or 'unknown reason'}" for o in report.failures)
    return "\n".join(lines)


def render_ingest_progress(name: str, done: int, total: int) -> str:
    if name.startswith(OCR_PROGRESS_PREFIX):  # pages read from images are counted on their own
        return f"reading page images of {name[len(OCR_PROGRESS_PREFIX):]}: {done} of {total}…"
    return f"indexing {name}: page {done} of {total}…"


_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s)|\n")


def split_message(text: str, limit: int) -> list[str]:
    """Split `text` into messages of at most `limit` characters.

    Cuts at the last paragraph break, else sentence end, else space that fits (paragraph and
    sentence cuts only in the second half, so no message is tiny), else mid-word. Whitespace at a
    cut is dropped; nothing else is lost, and no message is empty.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    chunks: list[str] = []
    text = text.strip()
    while len(text) > limit:
        cut = _cut_point(text, limit)
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        chunks.append(text)
    return chunks


def _cut_point(text: str, limit: int) -> int:
    window = text[: limit + 1]  # whitespace right after the limit is a valid boundary
    floor = max(1, limit // 2)
    paragraph = window.rfind("\n\n")
    if paragraph >= floor:
        return paragraph
    ends = (m.end() for m in _SENTENCE_END.finditer(window))
    sentence = max((end for end in ends if end <= limit), default=-1)
    if sentence >= floor:
        return sentence
    for index in range(min(limit, len(window) - 1), 0, -1):
        if window[index].isspace() and not _inside_citation(text, index):
            return index
    return limit


def _inside_citation(text: str, index: int) -> bool:
    """True at the space of "[guide.pdf p.13]": a citation should stay on one line."""
    opened = text.rfind("[", 0, index)
    if opened <= text.rfind("]", 0, index) or index - opened > 80:
        return False
    closed = text.find("]", index)
    return closed != -1 and closed - opened <= 80 and "\n" not in text[opened:closed]

