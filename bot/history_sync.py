"""Copies this node's history rows (bot.sqlite) to the shared history, in the background.

Why: the queue writes each finished job's row in bot.sqlite in the transaction that finishes it,
so it is durable before the reply goes out; the shared (Postgres) copy must not delay that reply,
nor be lost when the database is away. So the shared copy is made here, after the fact: every
local row with an id above `shared_history.copied_upto` is not shared yet; a pass copies them in
id order (batches, each one Postgres transaction) and then moves the mark. The shared table
ignores a row it has already (unique node + job id), so a pass repeated after a crash between
the two steps still lands each row once.

A pass runs at start-up (rows a stopped or crashed process left), whenever a row is added, and,
while the database is away, again after a backoff (1 s, doubling to a minute). One warning when
the shared write starts failing, one line when it has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.errors import ServiceUnavailable
from bot.migrations import BotDatabase

logger = logging.getLogger(__name__)

# Writes rows (the local table's columns) to the shared history as `node`'s, idempotently.
WriteRows = Callable[[str, list[dict[str, Any]]], Awaitable[None]]


class HistorySync:
    """One background task per node; `wake()` after a row was added."""

    def __init__(
        self,
        local: BotDatabase,
        write: WriteRows,
        *,
        where: str,
        retry_s: float = 1.0,
        max_retry_s: float = 60.0,
        batch: int = 200,
    ) -> None:
        self._local = local
        self._write = write
        self._where = where
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._batch = batch
        self._node = ""
        self._upto = 0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def node(self) -> str:
        """This bot.sqlite's name in the shared table (after `start`)."""
        return self._node

    async def start(self) -> None:
        """Read the mark and start copying (the first pass copies what a previous run left).

        A file never used with a shared history starts its mark at its newest row: what it
        answered before is not copied (rows of an older version were added the old way)."""
        async with self._local.transaction() as db:
            async with db.execute(
                "SELECT node, copied_upto FROM shared_history WHERE id = 1"
            ) as cur:
                row = await cur.fetchone()
            assert row is not None  # inserted by the migration
            node, upto = str(row[0]), row[1]
            if upto is None:
                async with db.execute("SELECT COALESCE(MAX(id), 0) FROM history") as cur:
                    found = await cur.fetchone()
                upto = int(found[0]) if found is not None else 0
                await db.execute(
                    "UPDATE shared_history SET copied_upto = ? WHERE id = 1", (upto,)
                )
        self._node, self._upto = node, int(upto)
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="folio-history-sync")

    def wake(self) -> None:
        """A row was added: copy it now (or after the current backoff, if the database is away)."""
        self._wake.set()

    async def pending(self) -> int:
        """Local rows not yet in the shared history."""
        async with self._local.reading() as db, db.execute(
            "SELECT COUNT(*) FROM history WHERE id > ?", (self._upto,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row is not None else 0

    async def copy_pending(self) -> int:
        """Copy every row above the mark, batch by batch; how many. Raises if the write fails
        (the mark stays where the last whole batch left it)."""
        copied = 0
        while True:
            async with self._local.reading() as db, db.execute(
                "SELECT * FROM history WHERE id > ? ORDER BY id LIMIT ?",
                (self._upto, self._batch),
            ) as cur:
                rows = [{key: r[key] for key in r.keys()} for r in await cur.fetchall()]  # noqa: SIM118 (aiosqlite.Row)
            if not rows:
                return copied
            try:
                await self._write(self._node, rows)
            except ServiceUnavailable:
                raise  # away: the whole batch again later
            except Exception:  # a row the database refuses must not hold up the others
                await self._write_one_by_one(rows)
            last = int(rows[-1]["id"])
            async with self._local.transaction() as db:
                await db.execute(
                    "UPDATE shared_history SET copied_upto = ? WHERE id = 1", (last,)
                )
            self._upto = last
            copied += len(rows)

    async def _write_one_by_one(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            try:
                await self._write(self._node, [row])
            except ServiceUnavailable:
                raise
            except Exception as exc:
                logger.error(
                    "shared history at %s: job %s's row refused (%s); it stays in bot.sqlite only",
                    self._where, row["job_id"], _reason(exc),
                )

    async def close(self, *, flush_s: float = 3.0) -> None:
        """Stop, after one last pass if the database answers within `flush_s`; what is left is
        copied at the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), flush_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = self._retry_s
        away_since: float | None = None
        first = True
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                copied = await self.copy_pending()
            except Exception as exc:
                if away_since is None:
                    away_since = time.monotonic()
                    logger.warning(
                        "shared history at %s: not written (%s); %d row(s) kept in bot.sqlite,"
                        " copied when it answers (retrying from %.0fs)",
                        self._where, _reason(exc), await self.pending(), delay,
                    )
                if self._stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    return
                delay = min(delay * 2, self._max_retry_s)
                self._wake.set()
                continue
            if away_since is not None:
                logger.info(
                    "shared history at %s: caught up, %d row(s) copied after %.0fs away",
                    self._where, copied, time.monotonic() - away_since,
                )
            elif first and copied:
                logger.info(
                    "shared history at %s: caught up, %d row(s) from before the restart copied",
                    self._where, copied,
                )
            away_since, delay, first = None, self._retry_s, False
            if self._stop.is_set():
                return


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else f"{type(exc).__name__}: {exc}"
