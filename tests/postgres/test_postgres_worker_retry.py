"""A database that is away while a job runs: the asker is told so in one line, the job goes back
in line and is answered when the database is back; after the last attempt, one line names it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, RecordingAdapter, StartCore, make_job

from bot.core import BotCore, CoreOptions
from bot.errors import DatabaseUnavailable
from bot.ports import AnswerEngine
from bot.worker import MAX_ATTEMPTS

WHERE = "127.0.0.1:5432/folio"


@pytest.fixture
async def start_core(tmp_path: Path) -> AsyncIterator[StartCore]:
    cores: list[BotCore] = []

    async def start(engine: AnswerEngine, *adapters: Any, **options: Any) -> BotCore:
        core = BotCore(engine, tmp_path / "bot.sqlite", CoreOptions(
            edit_interval_s=0.0, stop_grace_s=2.0, retry_backoff_s=0.05, **options))
        for adapter in adapters:
            core.register(adapter)
        await core.start()
        cores.append(core)
        return core

    yield start
    for core in cores:
        await core.stop()


async def test_a_database_away_mid_answer_is_retried_then_answered(
    start_core: StartCore,
) -> None:
    engine = FakeEngine()
    engine.enqueue(DatabaseUnavailable(WHERE, "server closed the connection unexpectedly"))
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    accepted = await core.submit(make_job("alpha", "ann"))
    final = await adapter.wait_final(accepted.job_id)
    assert final.kind == "post_answer"
    notices = [e.payload for e in adapter.for_job(accepted.job_id) if e.kind == "post_status"]
    assert sum(n.startswith("The database is not answering; trying again") for n in notices) == 1
    assert len(engine.calls) == 2


async def test_after_the_last_attempt_the_database_is_named_in_one_line(
    start_core: StartCore,
) -> None:
    engine = FakeEngine()
    engine.enqueue(*[DatabaseUnavailable(WHERE, "connection refused")] * MAX_ATTEMPTS)
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    accepted = await core.submit(make_job("alpha", "ann"))
    final = await adapter.wait_final(accepted.job_id)
    assert final.kind == "post_error"
    assert final.payload == (
        f"The database at {WHERE} is unreachable (connection refused); please try again in a "
        "few minutes."
    )
    assert len(engine.calls) == MAX_ATTEMPTS
