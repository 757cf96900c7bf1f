"""A job whose attempts keep killing the process is retried once, then ends with one line and
its history row: a question that segfaults the bot can never put it in a crash loop."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fakes import FakeEngine, RecordingAdapter, StartCore, make_job

from adapters.base import StreamLimits
from bot.errors import GeneratorCrashed
from bot.migrations import BotDatabase
from bot.queue import SqliteJobQueue


async def leave_running_as_a_dead_process_would(db_path: Path, deaths: int) -> int:
    """Queue one question and let `deaths` processes claim it and die (no complete, no requeue)."""
    db = await BotDatabase.open(db_path)
    try:
        queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=5)
        placed = await queue.put(make_job("test", "ana", "what kills the bot?"))
        for _ in range(deaths):
            claimed = await queue.claim(["test"])
            assert claimed is not None and claimed.id == placed.job.id
            await queue.recover()  # the next process starts and finds it left running
        return placed.job.id
    finally:
        await db.close()


async def test_a_job_left_running_by_one_dead_process_is_answered_after_the_restart(
    db_path: Path, start_core: StartCore
) -> None:
    job_id = await leave_running_as_a_dead_process_would(db_path, deaths=1)
    engine = FakeEngine()
    adapter = RecordingAdapter("test")
    await start_core(engine, adapter)
    final = await adapter.wait_final(job_id)
    assert final.kind == "post_answer"
    assert [call.question for call in engine.calls] == ["what kills the bot?"]


async def test_after_two_dead_processes_the_job_ends_with_the_crash_line_and_is_not_run(
    db_path: Path, start_core: StartCore
) -> None:
    job_id = await leave_running_as_a_dead_process_would(db_path, deaths=2)
    engine = FakeEngine()
    adapter = RecordingAdapter("test")
    await start_core(engine, adapter)
    final = await adapter.wait_final(job_id)
    assert final.kind == "post_error"
    assert "crashed on this question" in final.payload and "folio doctor" in final.payload
    assert engine.calls == []  # never a third run
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT status, crashes FROM jobs").fetchall() == [("failed", 2)]
        assert db.execute("SELECT status FROM history").fetchall() == [("failed",)]


async def test_a_model_crash_is_retried_once_then_answered_with_one_line(
    start_core: StartCore, db_path: Path
) -> None:
    engine = FakeEngine()
    engine.enqueue(GeneratorCrashed("killed by SIGSEGV"), GeneratorCrashed("killed by SIGSEGV"))
    adapter = RecordingAdapter("test")
    core = await start_core(engine, adapter)
    accepted = await core.submit(make_job("test", "ana", "the poisonous question"))
    final = await adapter.wait_final(accepted.job_id)
    assert final.kind == "post_error"
    assert final.payload.startswith("The model crashed on this question (killed by SIGSEGV)")
    assert len(engine.calls) == 2  # the first try and one retry
    statuses = [e.payload for e in adapter.for_job(accepted.job_id) if e.kind == "post_status"]
    assert any("trying once more" in text for text in statuses)
    # The next question is answered normally.
    second = await core.submit(make_job("test", "ana", "a harmless question"))
    assert (await adapter.wait_final(second.job_id)).kind == "post_answer"
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT status, crashes FROM jobs ORDER BY id").fetchall()
    assert rows == [("failed", 1), ("done", 0)]


class BrokenAdapter(RecordingAdapter):
    """An adapter with a bug the worker trips over before the engine runs."""

    @property
    def limits(self) -> StreamLimits:
        raise ZeroDivisionError("a bug in an adapter")


async def test_a_bug_in_the_worker_path_still_ends_the_job_with_a_reply(
    start_core: StartCore, db_path: Path
) -> None:
    adapter = BrokenAdapter("test")
    core = await start_core(FakeEngine(), adapter)
    accepted = await core.submit(make_job("test", "ana", "anything"))
    final = await adapter.wait_final(accepted.job_id)
    assert final.kind == "post_error" and final.payload.startswith("Sorry, something went wrong")
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT status FROM jobs").fetchall() == [("failed",)]
        assert db.execute("SELECT status FROM history").fetchall() == [("failed",)]
