"""Writes per question: each SQLite write transaction is an fsync (synchronous = FULL), so the hot
path is counted, through the real core, SQLite queue and worker, from SQLite's own statement trace
(not from our code's bookkeeping). A crash between any two of them still loses nothing (the
crash tests in test_bot_crash_loop.py and test_bot_process.py); this file keeps the count down.

What may wait for the queue's next write is held here until the core stops (which writes it), so
that a slow machine's pauses cannot add a timed flush to the count; test_bot_queue.py checks the
timed flush itself."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, RecordingAdapter, make_job

import bot.queue
from bot.core import BotCore, CoreOptions
from bot.jobs import Job, JobStatus
from bot.migrations import BotDatabase
from bot.queue import SqliteJobQueue

CHANGES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriteCounter:
    """Counts committed writes from the statements SQLite runs: a COMMIT of a transaction that
    changed something, or a change made outside any transaction (SQLite commits it on its own).
    A transaction that only read (a claim that found nothing) writes no page and syncs nothing."""

    def __init__(self) -> None:
        self.writes = 0
        self.statements: list[str] = []
        self._in_transaction = self._changed = False

    def __call__(self, sql: str) -> None:
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        self.statements.append(sql)
        if word == "BEGIN":
            self._in_transaction, self._changed = True, False
        elif word in ("COMMIT", "END"):
            self.writes += self._changed
            self._in_transaction = False
        elif word == "ROLLBACK":
            self._in_transaction = False
        elif word in CHANGES:
            if self._in_transaction:
                self._changed = True
            else:
                self.writes += 1


class RememberingAdapter(RecordingAdapter):
    """Posts a "Queued…" message on acknowledge and stores its id with the job, as Discord's
    and Slack's adapters do."""

    def __init__(self, platform: str) -> None:
        super().__init__(platform)
        self.core: BotCore | None = None

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        await asyncio.sleep(0.02)  # the platform's round trip
        assert self.core is not None
        await self.core.remember_reply(job.id, {"message_id": f"m{job.id}"})
        await super().acknowledge(job, position, eta_s)


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> WriteCounter:
    """Every connection the core opens reports its statements to one counter."""
    counting = WriteCounter()
    opened = BotDatabase.open.__func__  # type: ignore[attr-defined]

    async def open_counted(cls: type[BotDatabase], *args: Any, **kwargs: Any) -> BotDatabase:
        db = await opened(cls, *args, **kwargs)
        await db.conn.set_trace_callback(counting)
        return db

    monkeypatch.setattr(BotDatabase, "open", classmethod(open_counted))
    monkeypatch.setattr(bot.queue, "DEFERRED_FLUSH_S", 600.0)  # written at stop instead
    return counting


async def _started(
    tmp_path: Path, engine: FakeEngine | None = None
) -> tuple[BotCore, RememberingAdapter]:
    engine = engine or FakeEngine()
    core = BotCore(engine, tmp_path / "bot.sqlite", CoreOptions(edit_interval_s=0.0))
    adapter = RememberingAdapter("chat")
    adapter.core = core
    core.register(adapter)
    await core.start()
    return core, adapter


async def _until_the_worker_waits(core: BotCore, counter: WriteCounter) -> None:
    """Until the worker's first claim (finding nothing) has committed and it waits for work, as
    an idle bot's does. A read takes the connection's lock only after the claim released it, and
    the worker starts waiting in the same step as it releases it."""
    claim = "FROM jobs WHERE status = 'pending' AND platform IN"
    for _ in range(1000):
        await core.active_jobs()
        seen = counter.statements
        first = next((i for i, sql in enumerate(seen) if claim in sql), None)
        if first is not None and "COMMIT" in seen[first:]:
            await core.active_jobs()  # after the claim's transaction, whoever read first
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never looked for work")


def _stored(path: Path) -> list[tuple[int, str, str, bool, int]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT j.id, j.status, j.reply_to, j.delivered_at IS NOT NULL,"
            " (SELECT COUNT(*) FROM history h WHERE h.job_id = j.id) FROM jobs j ORDER BY j.id"
        ).fetchall()
    return [(i, s, r, bool(d), n) for i, s, r, d, n in rows]


async def test_one_question_to_an_idle_bot_costs_four_writes(
    tmp_path: Path, counter: WriteCounter
) -> None:
    core, adapter = await _started(tmp_path)
    await _until_the_worker_waits(core, counter)
    len_before = len(counter.statements)
    before = counter.writes  # start-up's own (recover) are not the question's
    try:
        accepted = await core.submit(make_job("chat", "ann", "what is the warranty?"))
        await adapter.wait_final(accepted.job_id)
    finally:
        await core.stop()
    writes = counter.writes - before
    # put and claim in one (the worker was idle); the "Queued…" message's id, at once (the job
    # is running: a crash mid-answer must find the message to finish); complete with its
    # history row; the sent reply's mark (written at stop here, else a second later).
    # Before: five.
    assert writes == 4, "\n".join(s[:90] for s in counter.statements[len_before:])
    [(job_id, status, reply_to, delivered, history)] = _stored(tmp_path / "bot.sqlite")
    assert (job_id, status, delivered, history) == (accepted.job_id, "done", True, 1)
    assert '"message_id": "m1"' in reply_to  # control: the adapter's message was stored


async def test_back_to_back_questions_cost_three_writes_each(
    tmp_path: Path, counter: WriteCounter
) -> None:
    engine = FakeEngine()
    core, adapter = await _started(tmp_path, engine)
    gate = engine.hold()  # the first question runs until the others are queued behind it
    count = 6
    await _until_the_worker_waits(core, counter)
    before = counter.writes
    try:
        first = (await core.submit(make_job("chat", "user0", "question 0"))).job_id
        await adapter.wait_kind(first, "acknowledge")  # its message id written (it runs)
        ids = [first] + [
            (await core.submit(make_job("chat", f"user{n}", f"question {n}"))).job_id
            for n in range(1, count)
        ]
        # Every "Queued…" posted (and its id given to the queue) while they wait.
        await adapter.wait_until(
            lambda: sum(e.kind == "acknowledge" for e in adapter.events) == count
        )
        gate.set()
        for job_id in ids:
            await adapter.wait_final(job_id, within=20)
    finally:
        await core.stop()
    writes = counter.writes - before
    # Each: put (its message id rides on a later write while it waits), claim (with the previous
    # reply's "delivered"), complete. The first is the idle bot's (its put claims it, its
    # message id is written at once); the last reply's mark is written at stop. Before: 25.
    assert writes == 4 + 3 * (count - 1), "\n".join(s[:70] for s in counter.statements)
    stored = _stored(tmp_path / "bot.sqlite")
    assert [(s, d, h) for _, s, _, d, h in stored] == [("done", True, 1)] * count
    assert all(f'"message_id": "m{i}"' in r for i, _, r, _, _ in stored)


async def test_a_job_claimed_with_its_put_as_the_bot_stops_goes_back_in_line(
    tmp_path: Path, counter: WriteCounter
) -> None:
    core, adapter = await _started(tmp_path)
    await _until_the_worker_waits(core, counter)
    submitting = asyncio.create_task(core.submit(make_job("chat", "ann", "asked at the last moment")))
    await asyncio.sleep(0)  # the submit has reserved the idle slot and its put is under way
    await core.stop()
    accepted = await submitting
    assert adapter.finals() == []  # it never ran here...
    [(job_id, status, _, _, history)] = _stored(tmp_path / "bot.sqlite")
    assert (job_id, status, history) == (accepted.job_id, "pending", 0)  # ...and is not lost
    with sqlite3.connect(tmp_path / "bot.sqlite") as db:
        assert db.execute("SELECT crashes FROM jobs").fetchone() == (0,)  # nor counted a crash
    restarted, again = await _started(tmp_path)
    try:
        await again.wait_final(accepted.job_id)  # answered after the restart
    finally:
        await restarted.stop()


async def test_a_put_claims_only_the_fairly_next_job_of_the_idle_workers_platforms(
    tmp_path: Path,
) -> None:
    db = await BotDatabase.open(tmp_path / "bot.sqlite")
    queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=10)
    try:
        other = await queue.put(make_job("elsewhere", "ann"), claim_for=["chat"])
        assert other.claimed is None  # not a platform of that worker: it waits for its own
        first = await queue.put(make_job("chat", "bob"), claim_for=["chat"])
        assert first.claimed is not None and first.claimed.id == first.job.id
        assert first.claimed.status is JobStatus.RUNNING and first.claimed.attempts == 1
        waiting = await queue.put(make_job("chat", "cy"))  # no idle worker: just pending
        assert waiting.claimed is None
        behind = await queue.put(make_job("chat", "dee"), claim_for=["chat"])
        assert behind.claimed is None  # cy's job is ahead in the fair order
        claimed = await queue.claim(["chat"])
        assert claimed is not None and claimed.id == waiting.job.id
        stored = await queue.get(first.job.id)
        assert stored is not None and stored.status is JobStatus.RUNNING
        assert (stored.started_at, stored.attempts) == (first.claimed.started_at, 1)
    finally:
        await queue.close()
        await db.close()

