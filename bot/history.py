"""Conversation history: every question with its answer, citations, timings and platform ids.

Rows are written only by `insert_record`, which both queues call in the transaction that marks
the job finished (the SQLite queue's, or this node's own once Redis decided), so a job is never
answered without a history row, nor logged twice. The worker reads the last turns of a
conversation for follow-ups; users list their own questions; the CLI exports everything as JSONL.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

import aiosqlite

from bot.jobs import (
    AnswerOutcome,
    ErrorOutcome,
    IngestOutcome,
    Job,
    JobKind,
    JobStatus,
    NoticeOutcome,
    Outcome,
    citation_to_dict,
    passage_to_dict,
)
from bot.migrations import BotDatabase
from rag.types import Turn


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One row of the history table, built from a finished job."""

    job_id: int
    kind: str
    status: str
    platform: str
    collection: str
    channel: str
    thread: str
    user_id: str
    message_id: str
    reply_to: str  # JSON
    question: str
    answer: str
    abstained: bool
    shortened: bool
    citations: str  # JSON list of {document, page, quote}
    retrieved: str  # JSON list of {chunk_id, document, page, score, ...}
    error: str
    model: str
    tokens: int
    prompt_tokens: int
    queue_wait_s: float | None
    retrieval_s: float | None
    first_token_s: float | None
    generation_s: float | None
    engine_s: float | None
    total_s: float | None
    asked_at: float
    answered_at: float


def build_record(
    job: Job, status: JobStatus, outcome: Outcome, *, finished_at: float | None = None
) -> HistoryRecord:
    """Turn a finished job and its outcome into a history row (timings from its timestamps)."""
    finished = time.time() if finished_at is None else finished_at
    answer_text, error, model = "", "", ""
    abstained = shortened = False
    citations: list[dict[str, Any]] = []
    retrieved: list[dict[str, Any]] = []
    tokens = prompt_tokens = 0
    retrieval_s = first_token_s = generation_s = engine_s = None
    match outcome:
        case AnswerOutcome(answer):
            answer_text, model = answer.text, answer.model
            abstained, shortened = answer.abstained, answer.shortened
            citations = [citation_to_dict(c) for c in answer.citations]
            retrieved = [passage_to_dict(p) for p in answer.retrieved]
            tokens, prompt_tokens = answer.tokens, answer.prompt_tokens
            t = answer.timings
            retrieval_s, first_token_s = t.retrieval, t.first_token
            generation_s, engine_s = t.generation, t.total
        case IngestOutcome(report):
            answer_text = (
                f"{report.files} file(s), {report.pages} pages, {report.chunks} chunks, "
                f"{len(report.duplicates)} duplicate(s), {len(report.failures)} failure(s)"
            )
            engine_s = report.seconds
        case NoticeOutcome(text):
            answer_text = text
        case ErrorOutcome(message):
            error = message
    question = job.attachment.filename if job.kind is JobKind.INGEST and job.attachment else ""
    return HistoryRecord(
        job_id=job.id,
        kind=job.kind.value,
        status=status.value,
        platform=job.platform,
        collection=job.collection,
        channel=job.channel,
        thread=job.thread,
        user_id=job.user,
        message_id=job.message_id,
        reply_to=json.dumps(dict(job.reply_to), ensure_ascii=False),
        question=job.text or question,
        answer=answer_text,
        abstained=abstained,
        shortened=shortened,
        citations=json.dumps(citations, ensure_ascii=False),
        retrieved=json.dumps(retrieved, ensure_ascii=False),
        error=error,
        model=model,
        tokens=tokens,
        prompt_tokens=prompt_tokens,
        queue_wait_s=(job.started_at - job.created_at) if job.started_at else None,
        retrieval_s=retrieval_s,
        first_token_s=first_token_s,
        generation_s=generation_s,
        engine_s=engine_s,
        total_s=finished - job.created_at,
        asked_at=job.created_at,
        answered_at=finished,
    )


async def insert_record(
    db: aiosqlite.Connection, record: HistoryRecord, *, stub_key: str | None = None
) -> None:
    """Insert inside the caller's transaction (the one that marks the job finished).

    The one place history rows are written, by both queues. `stub_key`: the job lives in
    another queue (Redis), so first the `jobs` row the row's foreign key needs, under that
    idempotency key, with no attachment and no result (so nothing here ever redelivers it).
    """
    if stub_key is not None:
        await db.execute(
            "INSERT INTO jobs (id, kind, status, platform, collection, channel, thread,"
            " user_id, message_id, text, reply_to, idempotency_key, created_at,"
            " finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.job_id, record.kind, record.status, record.platform, record.collection,
                record.channel, record.thread, record.user_id, record.message_id,
                record.question, record.reply_to, stub_key, record.asked_at,
                record.answered_at, record.error,
            ),
        )
    row = asdict(record)
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    await db.execute(f"INSERT INTO history ({columns}) VALUES ({marks})", tuple(row.values()))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A user's past question, as /history shows it."""

    job_id: int
    kind: str
    status: str
    collection: str
    question: str
    answer: str
    citations: list[dict[str, Any]]
    error: str
    asked_at: float


class HistoryLog(Protocol):
    """What the worker and the core read history through (and add a finished job to): this
    node's `History`, or the shared one (`bot.history_postgres.PostgresHistory`)."""

    async def add(self, record: HistoryRecord) -> None:
        """`record` is in bot.sqlite already; a shared history copies it in the background
        (never a wait for the reply)."""

    async def recent_turns(self, job: Job, limit: int) -> list[Turn]: ...

    async def for_user(
        self, platform: str, user: str, *, limit: int = 10
    ) -> list[HistoryEntry]: ...

    async def recent(self, *, limit: int = 20) -> list[dict[str, Any]]: ...

    async def export_jsonl(self, out: TextIO) -> int: ...


class History:
    """Reads the history table; writes go through the queue's completion transaction."""

    def __init__(self, db: BotDatabase) -> None:
        self._db = db

    async def add(self, record: HistoryRecord) -> None:
        """Nothing: the queue wrote the row in the transaction that finished the job."""

    async def recent_turns(self, job: Job, limit: int) -> list[Turn]:
        """The last answered turns of `job`'s conversation, oldest first, for follow-ups.

        In a thread the conversation is the thread (everyone in it); outside a thread it is this
        user's questions in this channel, so a busy channel does not mix unrelated people.
        """
        if limit <= 0:
            return []
        sql = (
            "SELECT question, answer FROM history WHERE kind = 'question' AND status = 'done'"
            " AND platform = ? AND collection = ? AND channel = ? AND thread = ? AND job_id != ?"
        )
        params: list[Any] = [job.platform, job.collection, job.channel, job.thread, job.id]
        if not job.thread:
            sql += " AND user_id = ?"
            params.append(job.user)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        async with self._db.reading() as db, db.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [Turn(question=r["question"], answer=r["answer"]) for r in reversed(list(rows))]

    async def for_user(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]:
        """This user's latest questions, newest first (never anyone else's)."""
        sql = (
            "SELECT job_id, kind, status, collection, question, answer, citations, error, asked_at"
            " FROM history WHERE platform = ? AND user_id = ? ORDER BY id DESC LIMIT ?"
        )
        async with self._db.reading() as db, db.execute(sql, (platform, user, limit)) as cur:
            rows = await cur.fetchall()
        return [
            HistoryEntry(
                job_id=r["job_id"],
                kind=r["kind"],
                status=r["status"],
                collection=r["collection"],
                question=r["question"],
                answer=r["answer"],
                citations=json.loads(r["citations"]),
                error=r["error"],
                asked_at=r["asked_at"],
            )
            for r in rows
        ]

    async def recent(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """The latest conversations of every user, newest first (`folio history`, admins only)."""
        sql = (
            "SELECT job_id, platform, user_id, collection, status, question, answer, abstained,"
            " total_s, asked_at FROM history WHERE kind = 'question' ORDER BY id DESC LIMIT ?"
        )
        async with self._db.reading() as db, db.execute(sql, (limit,)) as cur:
            rows = await cur.fetchall()
        return [{key: r[key] for key in r.keys()} for r in rows]  # noqa: SIM118 (aiosqlite.Row)

    async def export(self, *, batch: int = 500) -> AsyncIterator[dict[str, Any]]:
        """Every history row, oldest first, JSON columns decoded (`folio history --export`).

        Reads in batches so a large history neither sits in memory nor holds the lock for long.
        """
        last_id = 0
        while True:
            async with self._db.reading() as db, db.execute(
                "SELECT * FROM history WHERE id > ? ORDER BY id LIMIT ?", (last_id, batch)
            ) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                return
            for r in rows:
                item = {key: r[key] for key in r.keys()}  # noqa: SIM118 (aiosqlite.Row)
                for key in ("citations", "retrieved", "reply_to"):
                    item[key] = json.loads(item[key])
                item["abstained"] = bool(item["abstained"])
                item["shortened"] = bool(item["shortened"])
                yield item
            last_id = rows[-1]["id"]

    async def export_jsonl(self, out: TextIO) -> int:
        """Write the export as one JSON object per line; return how many rows were written."""
        return await write_jsonl(self.export(), out)


async def write_jsonl(items: AsyncIterator[dict[str, Any]], out: TextIO) -> int:
    """Write history rows as one JSON object per line (either store's export); return how many."""
    count = 0
    async for item in items:
        out.write(json.dumps(item, ensure_ascii=False) + "\n")
        count += 1
    return count
