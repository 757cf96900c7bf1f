"""The shared conversation history against a real Postgres: what one node adds, another reads
(its user's questions only, a conversation's turns for follow-ups, the full export); a job
finished while the database is away reaches it once it is back, exactly once, also after the
node restarts, and the reply does not wait for it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from fakes import FakeEngine, RecordingAdapter, make_job
from postgres_server import PostgresServer

from bot.core import BotCore, CoreOptions
from bot.history import HistoryRecord, build_record, insert_record
from bot.history_postgres import PostgresHistory
from bot.jobs import AnswerOutcome, JobStatus
from bot.migrations import BotDatabase
from rag.postgres import PostgresDatabase, PostgresOptions
from rag.types import Answer, Citation


def answer(text: str) -> AnswerOutcome:
    citation = Citation("harbour.pdf", 2, "visibility of five hundred metres")
    return AnswerOutcome(Answer(text, [citation], [], abstained=False, model="m"))


async def finish(local: BotDatabase, node: PostgresHistory, record: HistoryRecord) -> None:
    """What the queue and the worker do with a finished job: its row in bot.sqlite, then add."""
    async with local.transaction() as db:
        await insert_record(db, record, stub_key=f"test:{record.job_id}")
    await node.add(record)


async def until(check: Callable[[], object], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def shared_rows(url: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(url) as db:
        return [(r[0], r[1], r[2]) for r in db.execute(
            "SELECT node, job_id, question FROM history ORDER BY id").fetchall()]


OpenNode = Callable[[str, str], Awaitable[tuple[BotDatabase, PostgresHistory]]]


@pytest.fixture
async def open_node(tmp_path: Path) -> AsyncIterator[OpenNode]:
    """`await open_node(url, name)`: a node's bot.sqlite and its shared history, copying."""
    opened: list[tuple[BotDatabase, PostgresHistory]] = []

    async def start(url: str, name: str) -> tuple[BotDatabase, PostgresHistory]:
        local = await BotDatabase.open(tmp_path / f"{name}.sqlite")
        node = PostgresHistory(PostgresDatabase(PostgresOptions(url=url, pool_size=1)), local)
        await node.start()
        opened.append((local, node))
        return local, node

    yield start
    for local, node in opened:
        await node.stop()
        await local.close()


async def test_what_one_node_adds_every_node_reads(postgres_url: str, open_node: OpenNode) -> None:
    (one_db, one), (two_db, two) = [await open_node(postgres_url, n) for n in ("one", "two")]
    assert one.sync is not None and two.sync is not None
    ann = [replace(make_job("slack", "ann", f"question {i}", thread="t1"), id=10 + i)
           for i in range(3)]
    bob = replace(make_job("slack", "bob", "bob's question", thread="t1"), id=20)
    for job in ann:
        record = build_record(job, JobStatus.DONE, answer(f"answer to {job.text}"))
        await finish(one_db, one, record)
    await finish(two_db, two, build_record(bob, JobStatus.DONE, answer("bob's answer")))
    await until(lambda: len(shared_rows(postgres_url)) == 4)
    mine = await two.for_user("slack", "ann", limit=10)
    assert [e.question for e in mine] == ["question 2", "question 1", "question 0"]
    assert mine[0].citations[0]["page"] == 2
    assert [e.question for e in await one.for_user("slack", "bob")] == ["bob's question"]
    # A follow-up in the thread sees the thread's earlier turns (everyone's), oldest first.
    later = replace(make_job("slack", "ann", "and then?", thread="t1"), id=30)
    turns = await two.recent_turns(later, 2)
    assert [t.question for t in turns] == ["question 2", "bob's question"]
    assert [r["question"] for r in await one.recent(limit=2)] == [
        "bob's question", "question 2"]
    out = io.StringIO()
    assert await two.export_jsonl(out) == 4
    first = json.loads(out.getvalue().splitlines()[0])
    assert first["question"] == "question 0" and first["citations"][0]["document"] == (
        "harbour.pdf")


async def test_the_same_job_id_on_two_nodes_and_a_repeated_copy_land_once_each(
    postgres_url: str, open_node: OpenNode, tmp_path: Path
) -> None:
    """Nodes with their own SQLite queues both have a job 1; a copy repeated after a crash
    between the shared write and the local mark (here: the mark put back) adds nothing."""
    (one_db, one), (two_db, two) = [await open_node(postgres_url, n) for n in ("one", "two")]
    for local, node, who in ((one_db, one, "ann"), (two_db, two, "bob")):
        job = replace(make_job("slack", who, f"{who}'s first"), id=1)
        await finish(local, node, build_record(job, JobStatus.DONE, answer("yes")))
    await until(lambda: len(shared_rows(postgres_url)) == 2)
    assert sorted(q for _, _, q in shared_rows(postgres_url)) == ["ann's first", "bob's first"]
    assert one.sync is not None
    assert await one.sync.pending() == 0
    with sqlite3.connect(tmp_path / "one.sqlite") as raw:
        raw.execute("UPDATE shared_history SET copied_upto = 0")
    (_, again) = await open_node(postgres_url, "one")  # the same file, as after a restart
    assert again.sync is not None and again.sync.node == one.sync.node
    assert await again.sync.copy_pending() in (0, 1)  # the start-up pass may have done it
    await asyncio.sleep(0.2)
    assert len(shared_rows(postgres_url)) == 2


async def test_a_row_the_database_refuses_does_not_hold_up_the_others(
    postgres_url: str, open_node: OpenNode, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL character (SQLite keeps it, Postgres refuses it) is dropped from the shared copy;
    a row Postgres still refuses (a count over its INTEGER) gets one line and is skipped, and the
    rows after it are shared."""
    local, node = await open_node(postgres_url, "one")
    nul = replace(make_job("slack", "ann", "what\x00 is this?"), id=1)
    huge = replace(make_job("slack", "ann", "too many tokens"), id=2)
    after = replace(make_job("slack", "ann", "the one after"), id=3)
    await finish(local, node, build_record(nul, JobStatus.DONE, answer("an answer")))
    await until(lambda: len(shared_rows(postgres_url)) == 1)
    record = replace(build_record(huge, JobStatus.DONE, answer("an answer")), tokens=2**40)
    await finish(local, node, record)
    await finish(local, node, build_record(after, JobStatus.DONE, answer("an answer")))
    await until(lambda: len(shared_rows(postgres_url)) == 2)
    assert [q for _, _, q in shared_rows(postgres_url)] == ["what is this?", "the one after"]
    assert "job 2's row refused" in caplog.text
    assert node.sync is not None and await node.sync.pending() == 0


def freeze(server: PostgresServer, sig: signal.Signals) -> None:
    """SIGSTOP/SIGCONT the server and its backends: connections hang as on a dead network."""
    assert server.process is not None
    pids = [server.process.pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == server.process.pid:
                pids.append(int(entry))
    for pid in pids:
        os.kill(pid, sig)


async def test_a_job_finished_while_the_database_is_away_is_shared_once_it_is_back(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Postgres goes away mid-answer: the reply is not delayed, one line says the shared write
    failed; the row is copied once the database is back (no new job needed), and a row that a
    stopped node could not share is copied when it starts again, each exactly once."""
    caplog.set_level(logging.INFO, logger="bot.history_sync")
    options = PostgresOptions(url=postgres_url, pool_size=1, connect_timeout_s=1.0,
                              pool_timeout_s=1.0)
    db_path = tmp_path / "bot.sqlite"

    async def start_node(engine: FakeEngine, adapter: RecordingAdapter) -> BotCore:
        core = BotCore(engine, db_path, CoreOptions(edit_interval_s=0.0, stop_grace_s=2.0),
                       shared_history=options)
        core.register(adapter)
        await core.start()
        return core

    engine, adapter = FakeEngine(), RecordingAdapter("slack")
    core = await start_node(engine, adapter)
    try:
        # Normal: answered and shared.
        first = await core.submit(make_job("slack", "ann", "first question"))
        await adapter.wait_final(first.job_id)
        await until(lambda: [q for _, _, q in shared_rows(postgres_url)] == ["first question"])

        # Frozen mid-answer (connections hang): the reply still goes out at once.
        gate = engine.hold()
        second = await core.submit(make_job("slack", "ann", "second question"))
        await until(lambda: len(engine.calls) == 2)
        freeze(postgres_server, signal.SIGSTOP)
        try:
            released = time.monotonic()
            gate.set()
            final = await adapter.wait_final(second.job_id, within=10)
            assert final.at - released < 2.0, final.at - released
        finally:
            freeze(postgres_server, signal.SIGCONT)
        await until(lambda: len(shared_rows(postgres_url)) == 2)

        # Down: the reply goes out, the row waits in bot.sqlite and is copied when it is back.
        engine._gate = None
        gate = engine.hold()
        third = await core.submit(make_job("slack", "bob", "third question"))
        await until(lambda: len(engine.calls) == 3)
        postgres_server.stop()
        released = time.monotonic()
        gate.set()
        final = await adapter.wait_final(third.job_id, within=10)
        assert final.at - released < 2.0
        await until(lambda: "not written" in caplog.text)
        postgres_server.start()
        await until(lambda: "caught up" in caplog.text)
        assert "third question" in [q for _, _, q in shared_rows(postgres_url)]

        # Down again, and the node stops before the database is back: copied at its next start.
        caplog.clear()
        engine._gate = None
        gate = engine.hold()
        fourth = await core.submit(make_job("slack", "cy", "fourth question"))
        await until(lambda: len(engine.calls) == 4)
        postgres_server.stop()
        gate.set()
        await adapter.wait_final(fourth.job_id, within=10)
        await until(lambda: "not written" in caplog.text)
        await asyncio.sleep(3.5)  # retries after 1 s and 2 s
        assert caplog.text.count("not written") == 1  # one line per outage, not per retry
    finally:
        await core.stop()
    postgres_server.start()
    with sqlite3.connect(db_path) as raw:
        upto = raw.execute("SELECT copied_upto FROM shared_history").fetchone()[0]
        newest = raw.execute("SELECT MAX(id) FROM history").fetchone()[0]
    assert upto == newest - 1  # the fourth row is not shared yet
    core = await start_node(FakeEngine(), RecordingAdapter("slack"))
    try:
        await until(lambda: "before the restart copied" in caplog.text)
        questions = [q for _, _, q in shared_rows(postgres_url)]
        assert sorted(questions) == sorted(
            ["first question", "second question", "third question", "fourth question"])
        assert len({(n, j) for n, j, _ in shared_rows(postgres_url)}) == 4
        mine = await core.history("slack", "cy")
        assert [e.question for e in mine] == ["fourth question"]
    finally:
        await core.stop()
