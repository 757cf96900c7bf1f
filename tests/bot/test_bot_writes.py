"""Writes per question: each SQLite write transaction is an fsync (synchronous = FULL), so the hot
path is counted, through the real core, SQLite queue and worker, from SQLite's own statement trace
(not from our code's bookkeeping). A crash between any two of them still loses nothing (the
crash tests in test_bot_crash_loop.py and test_bot_process.py); this file keeps the count down."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, RecordingAdapter, make_job

from bot.core import BotCore, CoreOptions
from bot.jobs import Job
from bot.migrations import BotDatabase
from bot.queue import DEFERRED_FLUSH_S


class WriteCounter:
    """Counts committed writes from the statements SQLite runs: a COMMIT, or a change made
    outside any transaction (which SQLite commits on its own)."""

    def __init__(self) -> None:
        self.writes = 0
        self.statements: list[str] = []
        self._in_transaction = False

    def __call__(self, sql: str) -> None:
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        self.statements.append(sql)
        if word == "BEGIN":
            self._in_transaction = True
        elif word in ("COMMIT", "END"):
            self._in_transaction = False
            self.writes += 1
        elif word == "ROLLBACK":
            self._in_transaction = False
        elif word in ("INSERT", "UPDATE", "DELETE", "REPLACE") and not self._in_transaction:
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


async def _settled(counter: WriteCounter) -> int:
    """The writes once the deferred ones (a sent reply's mark) have been flushed."""
    await asyncio.sleep(DEFERRED_FLUSH_S + 0.5)
    return counter.writes


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
    try:
        before = await _settled(counter)  # start-up's own writes (recover) are not the question's
        accepted = await core.submit(make_job("chat", "ann", "what is the warranty?"))
        await adapter.wait_final(accepted.job_id)
        writes = await _settled(counter) - before
    finally:
        await core.stop()
    # put, claim, complete (with its history row; the remembered message rides on the claim or
    # the completion), and the sent reply's mark. Before: five.
    assert writes == 4, counter.statements
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
    try:
        before = await _settled(counter)
        ids = [
            (await core.submit(make_job("chat", f"user{n}", f"question {n}"))).job_id
            for n in range(count)
        ]
        gate.set()
        for job_id in ids:
            await adapter.wait_final(job_id, within=20)
        writes = await _settled(counter) - before
    finally:
        await core.stop()
    # Each: put, claim, complete; the message ids and the sent marks ride on those (plus at
    # most one flush at the end for the last reply). Before: four each.
    assert writes <= 3 * count + 1, (writes, counter.statements)
    stored = _stored(tmp_path / "bot.sqlite")
    assert [(s, d, h) for _, s, _, d, h in stored] == [("done", True, 1)] * count
    assert all(f'"message_id": "m{i}"' in r for i, _, r, _, _ in stored)
