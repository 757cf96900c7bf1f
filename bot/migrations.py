"""The schema of the bot database (jobs + history), as named, append-only migrations.

Never edit or reorder a migration that has shipped: add a new function at the end. Each one runs
in its own transaction together with the row that records it in `_migrations`, so a crash leaves
either the whole change or none of it, and a second process migrating at the same time waits.
Also here: `BotDatabase`, the one connection to that file, which serialises transactions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from rag.sqlite_wal import prepare_wal_file

logger = logging.getLogger(__name__)

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration; its function name is its permanent id."""
    MIGRATIONS.append(fn)
    return fn


@migration
async def m001_jobs(db: aiosqlite.Connection) -> None:
    await db.execute(
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            platform TEXT NOT NULL,
            collection TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL DEFAULT '',
            user_id TEXT NOT NULL,
            message_id TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL DEFAULT '',
            attachment_name TEXT,
            attachment BLOB,
            reply_to TEXT NOT NULL DEFAULT '{}',
            idempotency_key TEXT NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            result TEXT,
            error TEXT NOT NULL DEFAULT '',
            delivered_at REAL,
            UNIQUE (platform, idempotency_key)
        )
        """
    )
    await db.execute("CREATE INDEX jobs_status ON jobs (status, id)")
    await db.execute("CREATE INDEX jobs_user ON jobs (platform, user_id, id)")
    # When each user was last served, as a sequence number: the round-robin order.
    await db.execute(
        """
        CREATE TABLE user_turns (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            last_seq INTEGER NOT NULL,
            PRIMARY KEY (platform, user_id)
        )
        """
    )


@migration
async def m002_history(db: aiosqlite.Connection) -> None:
    await db.execute(
        """
        CREATE TABLE history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            platform TEXT NOT NULL,
            collection TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL,
            user_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            reply_to TEXT NOT NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            abstained INTEGER NOT NULL DEFAULT 0,
            shortened INTEGER NOT NULL DEFAULT 0,
            citations TEXT NOT NULL DEFAULT '[]',
            retrieved TEXT NOT NULL DEFAULT '[]',
            error TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            tokens INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            queue_wait_s REAL,
            retrieval_s REAL,
            first_token_s REAL,
            generation_s REAL,
            engine_s REAL,
            total_s REAL,
            asked_at REAL NOT NULL,
            answered_at REAL NOT NULL
        )
        """
    )
    await db.execute(
        "CREATE INDEX history_conversation ON history (platform, collection, channel, thread, id)"
    )
    await db.execute("CREATE INDEX history_user ON history (platform, user_id, id)")


@migration
async def m003_job_crashes(db: aiosqlite.Connection) -> None:
    """How many of a job's attempts ended with the process (or the model's process) dying."""
    await db.execute("ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0")


@migration
async def m004_shared_history(db: aiosqlite.Connection) -> None:
    """How far this file's history rows have been copied to the shared (Postgres) history.

    `node` names this file in the shared table, so job ids from different nodes' own queues
    cannot collide there; rows with an id above `copied_upto` are not shared yet (NULL: this
    file was never used with a shared history, see `bot.history_sync`).
    """
    await db.execute(
        """
        CREATE TABLE shared_history (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            node TEXT NOT NULL,
            copied_upto INTEGER
        )
        """
    )
    await db.execute(
        "INSERT INTO shared_history (id, node) VALUES (1, lower(hex(randomblob(16))))"
    )


async def migrate(db: aiosqlite.Connection) -> list[str]:
    """Apply the migrations not yet recorded, in order; return the names applied (none: a no-op)."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    applied: list[str] = []
    for fn in MIGRATIONS:
        name = fn.__name__
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)) as cur:
                done = await cur.fetchone() is not None
            if not done:
                await fn(db)
                await db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, time.time())
                )
                applied.append(name)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
    if applied:
        logger.info("bot database migrated: %s", ", ".join(applied))
    return applied


class BotDatabase:
    """The bot's one aiosqlite connection, with every write in a `BEGIN IMMEDIATE` transaction.

    One connection is shared by the queue and the history, so transactions from different
    coroutines must not interleave on it: `transaction()` and `reading()` hold an asyncio lock.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()
        self.commits = 0  # write transactions committed (each one an fsync with FULL)

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout_ms: int = 5000) -> BotDatabase:
        """Open (creating) the file in WAL mode and bring its schema up to date."""
        if str(path) != ":memory:":
            # The switch to WAL is retried apart: SQLite refuses it at once, without waiting
            # out the busy timeout, while another process is opening the same new file.
            await asyncio.to_thread(
                prepare_wal_file, Path(path), within_s=busy_timeout_ms / 1000
            )
        conn = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN ourselves
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a job acknowledged to the platform survives a power cut, not only a crash.
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction, committed on success and rolled back on any exception."""
        async with self._lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")
            self.commits += 1

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """Read-only access that does not land inside another coroutine's open transaction."""
        async with self._lock:
            yield self.conn

    async def close(self) -> None:
        async with self._lock:
            await self.conn.close()
