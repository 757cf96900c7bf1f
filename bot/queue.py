"""The durable job queue: SQLite (WAL) behind a small `JobQueue` protocol.

A job is committed before the platform hears "queued", so nothing acknowledged is ever lost.
Order is fair: the next job belongs to the user served least recently among those waiting, and
each user's own jobs run first-in first-out. Another back end (Redis) implements the same protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Protocol

import aiosqlite

from bot.errors import DuplicateJobError, QueueFullError
from bot.history import HistoryRecord, insert_record
from bot.jobs import (
    Attachment,
    Job,
    JobKind,
    JobStatus,
    Outcome,
    Placement,
    outcome_from_json,
    outcome_to_json,
)
from bot.migrations import BotDatabase

logger = logging.getLogger(__name__)

UserKey = tuple[str, str]  # (platform, user)
# What may wait for the queue's next write (a sent reply's mark, an adapter's message id) is
# written with it, or after this long when nothing else writes.
DEFERRED_FLUSH_S = 1.0


class JobQueue(Protocol):
    """What the core and the worker need from a queue back end."""

    async def put(self, job: Job, *, claim_for: Collection[str] = ()) -> Placement:
        """Store a new job durably. Raises DuplicateJobError or QueueFullError (nothing stored).

        `claim_for`: the platforms of an idle worker waiting for work. If the new job is the
        fairly-next of theirs, a back end may claim it in the same write (`Placement.claimed`,
        as `claim` would return it); else, or if it cannot, the job is just pending.
        """
        ...

    async def claim(self, platforms: Collection[str]) -> Job | None:
        """Mark the fairly-next pending job of these platforms running and return it, or None."""
        ...

    async def complete(
        self, job_id: int, status: JobStatus, outcome: Outcome, record: HistoryRecord | None
    ) -> bool:
        """Finish a running job with its outcome and history row, atomically.

        Returns False (and changes nothing) if the job is no longer running, so a job is never
        finished twice.
        """
        ...

    async def cancel_pending(
        self, job_id: int, outcome: Outcome, record: HistoryRecord | None
    ) -> bool:
        """Cancel a job that is still pending; False if it already started or finished."""
        ...

    async def requeue(self, job_id: int, *, crashed: bool = False) -> None:
        """Put a running job back to pending (graceful shutdown, a retry); `crashed` counts
        the attempt as one that ended in a crash."""
        ...

    async def recover(self) -> list[int]:
        """At start: jobs left running by a previous process go back to pending, each with one
        more crash counted (that process died with them)."""
        ...

    async def get(self, job_id: int) -> Job | None: ...

    async def latest_active(self, platform: str, user: str) -> Job | None:
        """The user's newest pending or running job."""
        ...

    async def active_for_message(self, platform: str, message_id: str) -> Job | None:
        """The pending or running job asked by this platform message, if any."""
        ...

    async def undelivered(self, platforms: Collection[str]) -> list[tuple[Job, Outcome]]:
        """Finished jobs whose outcome was stored but not confirmed delivered (crash in between)."""
        ...

    async def mark_delivered(self, job_id: int) -> None:
        """The job's reply was sent (recorded at once, or with the queue's next write)."""
        ...

    async def remember_reply(self, job_id: int, updates: Mapping[str, str]) -> bool:
        """Merge `updates` into the job's stored `reply_to` (for example the id of the status
        message the adapter posted), so whichever process delivers the job later edits that
        message instead of posting another. False if there is no such job."""
        ...

    async def recent_durations(self, limit: int) -> list[float]:
        """Run times in seconds of the latest answered questions, newest first (for the ETA)."""
        ...

    async def active(self) -> list[tuple[Job, int]]:
        """Every running job (position 0) then every pending one with its position in the fair
        order (1 = next), for a page that shows the queue. A snapshot, not a reservation."""
        ...

    async def close(self) -> None:
        """Write what is still held in memory and let go of the back end (at stop)."""
        ...


def fair_order(
    pending: Sequence[tuple[int, UserKey]], last_seq: Mapping[UserKey, int]
) -> list[int]:
    """The order in which `pending` (job id, user) will run: round-robin over users.

    Users are taken least-recently-served first (never served counts as 0; ties go to the user
    whose oldest waiting job is older); each round serves every waiting user once, in that order,
    and each user's jobs run in id (arrival) order.
    """
    by_user: dict[UserKey, list[int]] = defaultdict(list)
    for job_id, user in sorted(pending):
        by_user[user].append(job_id)
    users = sorted(by_user, key=lambda u: (last_seq.get(u, 0), by_user[u][0]))
    order: list[int] = []
    for round_index in range(max((len(jobs) for jobs in by_user.values()), default=0)):
        order.extend(by_user[u][round_index] for u in users if round_index < len(by_user[u]))
    return order


_LIGHT_COLUMNS = (
    "id, kind, status, platform, collection, channel, thread, user_id, message_id, text,"
    " attachment_name, reply_to, idempotency_key, created_at, started_at, finished_at, attempts,"
    " crashes"
)


def _row_to_job(row: aiosqlite.Row, *, with_attachment: bool) -> Job:
    attachment = None
    if with_attachment and row["attachment_name"] is not None:
        attachment = Attachment(row["attachment_name"], bytes(row["attachment"] or b""))
    return Job(
        id=row["id"],
        kind=JobKind(row["kind"]),
        status=JobStatus(row["status"]),
        platform=row["platform"],
        collection=row["collection"],
        channel=row["channel"],
        thread=row["thread"],
        user=row["user_id"],
        message_id=row["message_id"],
        text=row["text"],
        attachment=attachment,
        reply_to=json.loads(row["reply_to"]),
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        attempts=row["attempts"],
        crashes=row["crashes"],
    )


class SqliteJobQueue:
    """`JobQueue` on the bot's SQLite file; every write is one `BEGIN IMMEDIATE` transaction.

    Each transaction is an fsync, so a question costs three on its way (put, claim, complete
    with its history row; an idle worker's claim is in the put) and two things ride on the next
    one instead of costing their own: "delivered" (`mark_delivered`), and the adapter's message
    id (`remember_reply`) while the job is still waiting (a running job's is written at once, so
    a crash mid-answer finds the message to finish). They are written at the start of the next
    transaction (a claim, a completion, a new job), or after DEFERRED_FLUSH_S when nothing else
    writes, and reads here see them at once. A crash in that second loses neither question nor
    answer: a reply whose mark was held is sent again (into the same message), and a waiting
    job whose message id was held is answered in a new message (its "Queued…" one stays).
    """

    def __init__(self, db: BotDatabase, *, max_pending: int, max_pending_per_user: int) -> None:
        self._db = db
        self._max_pending = max_pending
        self._max_per_user = max_pending_per_user
        self._delivered: dict[int, float] = {}  # sent, not yet recorded: job id -> when
        self._replies: dict[int, dict[str, str]] = {}  # reply_to updates not yet recorded
        self._held_since: float | None = None  # when the oldest of those began to wait
        self._flush: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction that first records what was held for it (so its own statements
        see the stored message ids); all of it commits, or none and it stays held."""
        async with self._db.transaction() as db:
            # Taken once the connection is ours: what a write just before took is not repeated.
            marks = dict(self._delivered)
            replies = {job_id: dict(updates) for job_id, updates in self._replies.items()}
            for job_id, updates in replies.items():
                async with db.execute("SELECT reply_to FROM jobs WHERE id = ?", (job_id,)) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    merged = {**json.loads(row["reply_to"] or "{}"), **updates}
                    await db.execute(
                        "UPDATE jobs SET reply_to = ? WHERE id = ?",
                        (json.dumps(merged, ensure_ascii=False), job_id),
                    )
            if marks:
                await db.executemany(
                    "UPDATE jobs SET delivered_at = ? WHERE id = ?",
                    [(at, job_id) for job_id, at in marks.items()],
                )
            yield db
        for job_id in marks:  # committed
            self._delivered.pop(job_id, None)
        for job_id, updates in replies.items():
            held = self._replies.get(job_id, {})
            for key, value in updates.items():
                if held.get(key) == value:  # not changed again while this transaction ran
                    del held[key]
            if not held:
                self._replies.pop(job_id, None)
        # What arrived while this transaction ran waits for the next one, from now.
        self._held_since = time.monotonic() if self._delivered or self._replies else None

    def _hold(self) -> None:
        """Something waits for the next write: make sure one comes within DEFERRED_FLUSH_S."""
        if self._held_since is None:
            self._held_since = time.monotonic()
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._flush_soon(), name="folio-deferred")

    async def _flush_soon(self) -> None:
        """Write what has waited DEFERRED_FLUSH_S with no other write to ride on."""
        while self._held_since is not None:
            wait = self._held_since + DEFERRED_FLUSH_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            async with self._writing():
                pass

    def _with_held(self, job: Job) -> Job:
        """A stored job as it will be once the held message ids are written."""
        held = self._replies.get(job.id)
        return replace(job, reply_to={**job.reply_to, **held}) if held else job

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush
        if self._delivered or self._replies:
            async with self._writing():
                pass

    async def put(self, job: Job, *, claim_for: Collection[str] = ()) -> Placement:
        now = time.time()
        async with self._writing() as db:
            async with db.execute(
                "SELECT id FROM jobs WHERE platform = ? AND idempotency_key = ?",
                (job.platform, job.idempotency_key),
            ) as cur:
                existing = await cur.fetchone()
            if existing is not None:
                raise DuplicateJobError(f"Already received that message (job {existing['id']}).")
            pending = await self._pending(db)
            if len(pending) >= self._max_pending:
                raise QueueFullError(
                    f"The queue is full ({self._max_pending} requests waiting); "
                    "please try again in a few minutes."
                )
            mine = sum(1 for _, user in pending if user == job.requester)
            if mine >= self._max_per_user:
                raise QueueFullError(
                    f"You already have {mine} requests waiting; wait for an answer "
                    "or cancel one first."
                )
            cur = await db.execute(
                "INSERT INTO jobs (kind, status, platform, collection, channel, thread, user_id,"
                " message_id, text, attachment_name, attachment, reply_to, idempotency_key,"
                " created_at) VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.kind.value,
                    job.platform,
                    job.collection,
                    job.channel,
                    job.thread,
                    job.user,
                    job.message_id,
                    job.text,
                    job.attachment.filename if job.attachment else None,
                    job.attachment.data if job.attachment else None,
                    json.dumps(dict(job.reply_to), ensure_ascii=False),
                    job.idempotency_key,
                    now,
                ),
            )
            job_id = cur.lastrowid
            assert job_id is not None
            waiting = [*pending, (job_id, job.requester)]
            last_seq = await self._last_seq(db)
            order = fair_order(waiting, last_seq)
            async with db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'") as cur:
                running = (await cur.fetchone() or (0,))[0]
            theirs = [(i, user) for i, user in waiting if user[0] in claim_for]
            claimed = bool(theirs) and fair_order(theirs, last_seq)[0] == job_id
            if claimed:  # an idle worker takes it: one write instead of a put and a claim
                await self._mark_running(db, job_id, now)
        stored = replace(job, id=job_id, status=JobStatus.PENDING, created_at=now)
        placement = Placement(job=stored, position=order.index(job_id) + 1, running=int(running))
        if claimed:
            running_job = replace(stored, status=JobStatus.RUNNING, started_at=now, attempts=1)
            placement = replace(placement, claimed=running_job)
        return placement

    async def claim(self, platforms: Collection[str]) -> Job | None:
        if not platforms:
            return None
        async with self._writing() as db:
            order = fair_order(await self._pending(db, platforms), await self._last_seq(db))
            if not order:
                return None
            job_id = order[0]
            await self._mark_running(db, job_id, time.time())
            async with db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
                row = await cur.fetchone()
        assert row is not None
        return _row_to_job(row, with_attachment=True)

    @staticmethod
    async def _mark_running(db: aiosqlite.Connection, job_id: int, now: float) -> None:
        """Claim `job_id`: running from `now`, one more attempt, its user served last."""
        await db.execute(
            "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1"
            " WHERE id = ?",
            (now, job_id),
        )
        await db.execute(
            "INSERT INTO user_turns (platform, user_id, last_seq)"
            " SELECT platform, user_id, (SELECT COALESCE(MAX(last_seq), 0) + 1 FROM user_turns)"
            " FROM jobs WHERE id = ?"
            " ON CONFLICT (platform, user_id) DO UPDATE SET last_seq = excluded.last_seq",
            (job_id,),
        )

    async def complete(
        self, job_id: int, status: JobStatus, outcome: Outcome, record: HistoryRecord | None
    ) -> bool:
        return await self._finish(job_id, JobStatus.RUNNING, status, outcome, record)

    async def cancel_pending(
        self, job_id: int, outcome: Outcome, record: HistoryRecord | None
    ) -> bool:
        return await self._finish(job_id, JobStatus.PENDING, JobStatus.CANCELLED, outcome, record)

    async def _finish(
        self,
        job_id: int,
        expected: JobStatus,
        status: JobStatus,
        outcome: Outcome,
        record: HistoryRecord | None,
    ) -> bool:
        error = getattr(outcome, "message", "")
        async with self._writing() as db:
            cur = await db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, result = ?, error = ?,"
                " attachment = NULL WHERE id = ? AND status = ?",
                (
                    status.value,
                    record.answered_at if record else time.time(),
                    outcome_to_json(outcome),
                    error,
                    job_id,
                    expected.value,
                ),
            )
            if cur.rowcount != 1:
                logger.warning("job %s was not %s; left unchanged", job_id, expected.value)
                return False
            if record is not None:
                await insert_record(db, record)
        return True

    async def requeue(self, job_id: int, *, crashed: bool = False) -> None:
        async with self._writing() as db:
            await db.execute(
                "UPDATE jobs SET status = 'pending', started_at = NULL, crashes = crashes + ?"
                " WHERE id = ? AND status = 'running'",
                (int(crashed), job_id),
            )

    async def recover(self) -> list[int]:
        async with self._writing() as db:
            async with db.execute("SELECT id FROM jobs WHERE status = 'running'") as cur:
                ids = [row["id"] for row in await cur.fetchall()]
            await db.execute(
                "UPDATE jobs SET status = 'pending', started_at = NULL, crashes = crashes + 1"
                " WHERE status = 'running'"
            )
        if ids:
            logger.warning("requeued %d job(s) left running by the last process: %s", len(ids), ids)
        return ids

    async def get(self, job_id: int) -> Job | None:
        async with self._db.reading() as db, db.execute(
            f"SELECT {_LIGHT_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else self._with_held(_row_to_job(row, with_attachment=False))

    async def active_for_message(self, platform: str, message_id: str) -> Job | None:
        if not message_id:
            return None
        async with self._db.reading() as db, db.execute(
            f"SELECT {_LIGHT_COLUMNS} FROM jobs WHERE platform = ? AND message_id = ?"
            " AND status IN ('pending', 'running') ORDER BY id DESC LIMIT 1",
            (platform, message_id),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else self._with_held(_row_to_job(row, with_attachment=False))

    async def latest_active(self, platform: str, user: str) -> Job | None:
        async with self._db.reading() as db, db.execute(
            f"SELECT {_LIGHT_COLUMNS} FROM jobs WHERE platform = ? AND user_id = ?"
            " AND status IN ('pending', 'running') ORDER BY id DESC LIMIT 1",
            (platform, user),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else self._with_held(_row_to_job(row, with_attachment=False))

    async def undelivered(self, platforms: Collection[str]) -> list[tuple[Job, Outcome]]:
        if not platforms:
            return []
        marks = ", ".join("?" for _ in platforms)
        async with self._db.reading() as db, db.execute(
            f"SELECT {_LIGHT_COLUMNS}, result FROM jobs WHERE delivered_at IS NULL"
            f" AND result IS NOT NULL AND platform IN ({marks}) ORDER BY id",
            tuple(platforms),
        ) as cur:
            rows = await cur.fetchall()
        return [
            (self._with_held(_row_to_job(r, with_attachment=False)), outcome_from_json(r["result"]))
            for r in rows
            if r["id"] not in self._delivered  # sent; the mark is on its way
        ]

    async def mark_delivered(self, job_id: int) -> None:
        self._delivered[job_id] = time.time()
        self._hold()

    async def remember_reply(self, job_id: int, updates: Mapping[str, str]) -> bool:
        async with self._db.reading() as db, db.execute(
            "SELECT status FROM jobs WHERE id = ?", (job_id,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return False
        self._replies.setdefault(job_id, {}).update(updates)
        if row["status"] == JobStatus.PENDING.value:
            self._hold()  # its claim (or the next write before it) writes it first
        else:  # it is being answered: a crash must find its message, whatever comes next
            async with self._writing():
                pass
        return True

    async def recent_durations(self, limit: int) -> list[float]:
        async with self._db.reading() as db, db.execute(
            "SELECT finished_at - started_at AS seconds FROM jobs WHERE status = 'done'"
            " AND kind = 'question' AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        ) as cur:
            rows = await cur.fetchall()
        return [float(r["seconds"]) for r in rows]

    async def active(self) -> list[tuple[Job, int]]:
        async with self._db.reading() as db:
            async with db.execute(
                f"SELECT {_LIGHT_COLUMNS} FROM jobs WHERE status IN ('pending', 'running')"
            ) as cur:
                rows = {
                    r["id"]: self._with_held(_row_to_job(r, with_attachment=False))
                    for r in await cur.fetchall()
                }
            order = fair_order(await self._pending(db), await self._last_seq(db))
        running = sorted(
            (j for j in rows.values() if j.status is JobStatus.RUNNING), key=lambda j: j.id
        )
        waiting = [(rows[i], n) for n, i in enumerate(order, start=1) if i in rows]
        return [(j, 0) for j in running] + waiting

    async def _pending(
        self, db: aiosqlite.Connection, platforms: Collection[str] | None = None
    ) -> list[tuple[int, UserKey]]:
        sql = "SELECT id, platform, user_id FROM jobs WHERE status = 'pending'"
        params: tuple[Any, ...] = ()
        if platforms is not None:
            sql += f" AND platform IN ({', '.join('?' for _ in platforms)})"
            params = tuple(platforms)
        async with db.execute(sql, params) as cur:
            return [(r["id"], (r["platform"], r["user_id"])) for r in await cur.fetchall()]

    async def _last_seq(self, db: aiosqlite.Connection) -> dict[UserKey, int]:
        async with db.execute("SELECT platform, user_id, last_seq FROM user_turns") as cur:
            return {(r["platform"], r["user_id"]): r["last_seq"] for r in await cur.fetchall()}
