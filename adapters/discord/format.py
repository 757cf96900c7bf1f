"""Discord's side of the reply text: the shared renderers from `bot.render`, made safe to post.

Bare links are wrapped in <…>, which Discord never previews: edits of interaction responses
cannot carry the suppress-embeds flag, so this is what keeps a document's URLs from unfurling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from bot import render
from bot.history import HistoryEntry
from bot.jobs import Job
from rag.types import Answer, DocumentInfo, IngestReport

LIMIT = 2000  # characters Discord accepts in one message
_BARE_URL = re.compile(r"(?<![<(])\bhttps?://[^\s<>]+")


def no_previews(text: str) -> str:
    return _BARE_URL.sub(lambda m: f"<{m.group(0)}>", text)


def messages(text: str) -> list[str]:
    """`text` as messages of at most 2,000 characters each."""
    return render.split_message(no_previews(text), LIMIT) or ["…"]


def answer_messages(answer: Answer) -> list[str]:
    return messages(render.render_answer(answer))


def ingest_messages(report: IngestReport) -> list[str]:
    return messages(render.render_ingest(report))


def status_line(text: str) -> str:
    """A short progress line, e.g. "Searching the documents…"."""
    text = text.strip()
    return no_previews(text[:1].upper() + text[1:])


def queued_line(position: int, eta_s: float) -> str:
    return status_line(render.render_queued(position, eta_s))


def docs_messages(documents: Sequence[DocumentInfo]) -> list[str]:
    if not documents:
        return ["No documents are indexed here yet. An admin can add one with `/ingest`."]
    lines = [f"{len(documents)} document(s):"]
    for doc in documents:
        lines.append(f"- {escape(doc.name)} ({doc.pages} pages, added {doc.added_at[:10]})")
    return messages("\n".join(lines))


def escape(text: str) -> str:
    """Escape markdown in names (a file called `__init__.pdf` should not turn bold)."""
    return re.sub(r"([\\*_`~|>\[\]])", r"\\\1", text)


def thread_name(question: str) -> str:
    """Thread titles are at most 100 characters and one line."""
    name = " ".join(question.split()) or "Question"
    return name if len(name) <= 100 else name[:99].rstrip() + "…"


def cancel_messages(job: Job) -> list[str]:
    what = " ".join(job.text.split())
    what = what if len(what) <= 150 else what[:149] + "…"
    return messages(f"Cancelled: {what}" if what else "Cancelled.")


def history_messages(entries: Sequence[HistoryEntry]) -> list[str]:
    if not entries:
        return ["You have not asked anything yet."]
    lines = ["Your recent questions:"]
    for entry in entries:
        when = datetime.fromtimestamp(entry.asked_at, UTC).strftime("%Y-%m-%d %H:%M")
        question = " ".join(entry.question.split())
        question = question if len(question) <= 150 else question[:149] + "…"
        pages = " ".join(render.render_stored_citation(c) for c in entry.citations[:3])
        status = "" if entry.status == "done" else f" ({entry.status})"
        lines.append(f"- {when} UTC: {question}{status} {pages}".rstrip())
    return messages("\n".join(lines))
