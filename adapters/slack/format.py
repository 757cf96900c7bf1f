"""Folio's replies as Slack mrkdwn. Every piece of text that comes from a document, the model
or a user is escaped here; only the markup Folio adds (`*bold*`, `_italic_`, `<@U…>`) is live."""

from __future__ import annotations

import re
from collections.abc import Sequence

from adapters.slack.mrkdwn import escape
from bot import render
from bot.history import HistoryEntry
from rag.types import Answer, DocumentInfo, IngestReport

_USER_ID = re.compile(r"^[UW][A-Z0-9]+$")


def mention(user_id: str) -> str:
    return f"<@{user_id}>" if _USER_ID.match(user_id) else escape(user_id)


def question_header(user_id: str, question: str) -> str:
    return f"{mention(user_id)} asked: _{escape(question)}_"


def with_header(header: str | None, body: str) -> str:
    return f"{header}\n\n{body}" if header else body


def queued(position: int, eta_s: float | None = None) -> str:
    text = render.render_queued(position, eta_s or 0.0)
    return text[:1].upper() + text[1:] + "."


def answer_text(answer: Answer) -> str:
    """The final answer with its sources; the model's text and file names are escaped."""
    return escape(render.render_answer(answer))


def partial_text(text: str) -> str:
    return escape(text.strip()) + " …"


def documents_text(docs: Sequence[DocumentInfo]) -> str:
    if not docs:
        return "No documents yet. An admin can add PDFs by mentioning me with files attached."
    lines = [f"*{len(docs)} document{'s' if len(docs) != 1 else ''}:*"]
    for doc in docs:
        lines.append(f"• {escape(doc.name)}: {doc.pages} pages, {doc.chunks} passages")
    return "\n".join(lines)


def history_text(entries: Sequence[HistoryEntry]) -> str:
    if not entries:
        return "You have not asked anything yet."
    lines = ["*Your recent requests:*"]
    for entry in entries:
        result = (entry.answer or entry.error or entry.status).strip().replace("\n", " ")
        if len(result) > 160:
            result = result[:157] + "..."
        lines.append(f"• _{escape(entry.question)}_ → {escape(result)}")
    return "\n".join(lines)


def ingest_progress(name: str, done: int, total: int) -> str:
    return escape(render.render_ingest_progress(name, done, total))


def ingest_summary(report: IngestReport) -> str:
    return escape(render.render_ingest(report))
