"""Conversation history in the shared Postgres database (`store.backend = "postgres"`), so every
node sees every answer: `/history`, `folio history` and the follow-ups of a conversation are the
same whichever node answered. Reads and writes the `history` table of `rag.postgres`'s
migrations m002 and m006 through its pool (psycopg stays in that one module), in a worker thread.

The queue writes each node's own row in `bot.sqlite` in the transaction that finishes the job;
`bot.history_sync` copies those rows here in the background (`add` only wakes it), so a
database that is away delays neither the reply nor loses the shared row: it is copied, once,
when the database answers again (also after a restart of the node).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import fields
from typing import Any, TextIO

from bot.history import HistoryEntry, HistoryRecord, write_jsonl
from bot.history_sync import HistorySync
from bot.jobs import Job
from bot.migrations import BotDatabase
from rag.postgres import PostgresDatabase
from rag.types import Turn

_COLUMNS = [f.name for f in fields(HistoryRecord)]
_BOOLEANS = ("abstained", "shortened")  # INTEGER in SQLite, BOOLEAN here
# Newest first by when it was answered: a row copied late (after an outage) has a later id.
_NEWEST = " ORDER BY answered_at DESC, id DESC"


class PostgresHistory:
    """The `bot.history.History` interface over the shared database."""

    def __init__(
        self,
        database: PostgresDatabase,
        local: BotDatabase | None = None,
        *,
        retry_s: float = 1.0,
        max_retry_s: float = 60.0,
    ) -> None:
        """`local`: this node's bot.sqlite, whose rows are copied here (None: only reading,
        as `folio history` does)."""
        self._db = database
        self.sync: HistorySync | None = None
        if local is not None:
            self.sync = HistorySync(
                local, self._write_rows, where=database.where,
                retry_s=retry_s, max_retry_s=max_retry_s,
            )

    async def start(self) -> None:
        """Start copying this node's rows (first the ones a previous run left)."""
        if self.sync is not None:
            await self.sync.start()

    async def stop(self) -> None:
        """Stop copying (before bot.sqlite closes), then close the pool."""
        if self.sync is not None:
            await self.sync.close()
        await asyncio.to_thread(self._db.close)

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
        """The row is in bot.sqlite already (the queue wrote it): copy it in the background,
        so the reply never waits for this database."""
        if self.sync is not None:
            self.sync.wake()

    async def _write_rows(self, node: str, rows: list[dict[str, Any]]) -> None:
        """`node`'s rows (bot.sqlite's columns), in one transaction; a row already here (the
        same node and job) is left as it is."""
        sql = (f"INSERT INTO history (node, {', '.join(_COLUMNS)}) "
               f"VALUES (%s, {', '.join(['%s'] * len(_COLUMNS))}) "
               "ON CONFLICT (node, job_id) DO NOTHING")
        params = [[node, *(_value(c, row[c]) for c in _COLUMNS)] for row in rows]

        def write() -> None:
            with self._db.transaction() as db, db.cursor() as cursor:
                cursor.executemany(sql, params)

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
        rows = await self._rows(sql + _NEWEST + " LIMIT %s", [*params, limit])
        return [Turn(question=r["question"], answer=r["answer"]) for r in reversed(rows)]

    async def for_user(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]:
        rows = await self._rows(
            "SELECT job_id, kind, status, collection, question, answer, citations, error,"
            " asked_at FROM history WHERE platform = %s AND user_id = %s" + _NEWEST
            + " LIMIT %s",
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
            " total_s, asked_at FROM history WHERE kind = 'question'" + _NEWEST + " LIMIT %s",
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


def _value(column: str, value: Any) -> Any:
    """A bot.sqlite value as this table takes it: SQLite's 0/1 as booleans, and text without
    NUL characters (SQLite keeps them, Postgres refuses the whole row)."""
    if column in _BOOLEANS:
        return bool(value)
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "")
    return value
