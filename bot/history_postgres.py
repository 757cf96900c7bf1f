"""Conversation history in the shared Postgres database (`store.backend = "postgres"`), so every
node sees every answer: `/history`, `folio history` and the follow-ups of a conversation are the
same whichever node answered. Reads and writes the `history` table of `rag.postgres`'s
migration m002 through its pool (psycopg stays in that one module), in a worker thread.

The queue still writes each node's own row in `bot.sqlite` in the transaction that finishes the
job; the worker adds the shared row right after (`add`). A database that is away at that moment
costs the shared row, logged, never the answer (which is stored and delivered already).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, fields
from typing import Any, TextIO

from bot.history import HistoryEntry, HistoryRecord, write_jsonl
from bot.jobs import Job
from rag.postgres import PostgresDatabase
from rag.types import Turn

_COLUMNS = [f.name for f in fields(HistoryRecord)]


class PostgresHistory:
    """The `bot.history.History` interface over the shared database."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def close(self) -> None:
        self._db.close()

    async def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            with self._db.transaction() as db:
                cursor = db.execute(sql, params)
                names = [c.name for c in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return await asyncio.to_thread(read)

    async def add(self, record: HistoryRecord) -> None:
        row = asdict(record)
        sql = (f"INSERT INTO history ({', '.join(_COLUMNS)}) "
               f"VALUES ({', '.join(['%s'] * len(_COLUMNS))})")

        def write() -> None:
            with self._db.transaction() as db:
                db.execute(sql, [row[c] for c in _COLUMNS])

        await asyncio.to_thread(write)

    async def recent_turns(self, job: Job, limit: int) -> list[Turn]:
        """As `History.recent_turns`: the thread's turns, or this user's in this channel."""
        if limit <= 0:
            return []
        sql = (
            "SELECT question, answer FROM history WHERE kind = 'question' AND status = 'done'"
            " AND platform = %s AND collection = %s AND channel = %s AND thread = %s"
            " AND job_id != %s"
        )
        params: list[Any] = [job.platform, job.collection, job.channel, job.thread, job.id]
        if not job.thread:
            sql += " AND user_id = %s"
            params.append(job.user)
        rows = await self._rows(sql + " ORDER BY id DESC LIMIT %s", [*params, limit])
        return [Turn(question=r["question"], answer=r["answer"]) for r in reversed(rows)]

    async def for_user(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]:
        rows = await self._rows(
            "SELECT job_id, kind, status, collection, question, answer, citations, error,"
            " asked_at FROM history WHERE platform = %s AND user_id = %s"
            " ORDER BY id DESC LIMIT %s",
            [platform, user, limit],
        )
        return [
            HistoryEntry(
                job_id=r["job_id"], kind=r["kind"], status=r["status"],
                collection=r["collection"], question=r["question"], answer=r["answer"],
                citations=json.loads(r["citations"]), error=r["error"], asked_at=r["asked_at"],
            )
            for r in rows
        ]

    async def recent(self, *, limit: int = 20) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT job_id, platform, user_id, collection, status, question, answer, abstained,"
            " total_s, asked_at FROM history WHERE kind = 'question' ORDER BY id DESC LIMIT %s",
            [limit],
        )

    async def export(self, *, batch: int = 500) -> AsyncIterator[dict[str, Any]]:
        last_id = 0
        while True:
            rows = await self._rows(
                "SELECT * FROM history WHERE id > %s ORDER BY id LIMIT %s", [last_id, batch]
            )
            if not rows:
                return
            for item in rows:
                for key in ("citations", "retrieved", "reply_to"):
                    item[key] = json.loads(item[key])
                yield item
            last_id = rows[-1]["id"]

    async def export_jsonl(self, out: TextIO) -> int:
        return await write_jsonl(self.export(), out)
