"""The SQLite queue and its schema: fair order, durability settings, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path

from fakes import make_job
from hypothesis import given
from hypothesis import strategies as st

from bot.jobs import JobStatus, NoticeOutcome
from bot.migrations import MIGRATIONS, BotDatabase, migrate
from bot.queue import DEFERRED_FLUSH_S, SqliteJobQueue, fair_order


def test_fair_order_is_round_robin_and_fifo_per_user() -> None:
    a, b, c = ("p", "a"), ("p", "b"), ("q", "c")
    pending = [(1, a), (2, a), (3, a), (4, b), (5, c), (6, b)]
    assert fair_order(pending, {}) == [1, 4, 5, 2, 6, 3]
    # a was served most recently, c before b: c, b, a, then again.
    assert fair_order(pending, {a: 9, b: 5, c: 2}) == [5, 4, 1, 6, 2, 3]
    assert fair_order([], {}) == []


@given(st.lists(st.sampled_from("abcde"), max_size=40), st.permutations("abcde"))
def test_fair_order_properties(users: list[str], served: list[str]) -> None:
    pending = [(i + 1, ("p", u)) for i, u in enumerate(users)]
    last_seq = {("p", u): n for n, u in enumerate(served[:2], start=1)}
    order = fair_order(pending, last_seq)
    owner = dict(pending)
    assert sorted(order) == [job for job, _ in pending]
    for user in set(users):
        mine = [j for j in order if owner[j][1] == user]
        assert mine == sorted(mine)  # FIFO within a user
    # Round-robin: every waiting user's k-th job runs before anyone's (k+1)-th.
    count: Counter[str] = Counter()
    turns = []
    for job in order:
        count[owner[job][1]] += 1
        turns.append(count[owner[job][1]])
    assert turns == sorted(turns)
    # Within the first round, users never served go first, then by least recently served.
    first_round = [owner[j][1] for j, turn in zip(order, turns, strict=True) if turn == 1]
    rank = {u: served_at for served_at, u in enumerate(served[:2], start=1)}
    assert [rank.get(u, 0) for u in first_round] == sorted(rank.get(u, 0) for u in first_round)


async def test_migrations_are_recorded_and_rerunning_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite"
    db = await BotDatabase.open(path)
    assert await migrate(db.conn) == []  # open() already applied them
    await db.close()
    with sqlite3.connect(path) as raw:
        names = [r[0] for r in raw.execute("SELECT name FROM _migrations ORDER BY rowid")]
        assert names == [fn.__name__ for fn in MIGRATIONS] == [
            "m001_jobs", "m002_history", "m003_job_crashes", "m004_shared_history"
        ]
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = await BotDatabase.open(path)
    await again.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


async def test_a_failed_migration_leaves_nothing_half_done(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite"
    await (await BotDatabase.open(path)).close()

    async def m999_broken(db: object) -> None:
        conn = db  # an aiosqlite connection
        await conn.execute("CREATE TABLE half (x)")  # type: ignore[attr-defined]
        raise RuntimeError("boom")

    MIGRATIONS.append(m999_broken)
    try:
        try:
            await BotDatabase.open(path)
        except RuntimeError:
            pass
        else:
            raise AssertionError("the broken migration should have failed")
    finally:
        MIGRATIONS.remove(m999_broken)
    with sqlite3.connect(path) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "half" not in tables
        assert raw.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


async def test_claim_only_takes_jobs_of_registered_platforms(tmp_path: Path) -> None:
    db = await BotDatabase.open(tmp_path / "bot.sqlite")
    queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=10)
    slack = (await queue.put(make_job("slack", "ann"))).job
    assert await queue.claim(["discord"]) is None
    claimed = await queue.claim(["discord", "slack"])
    assert claimed is not None and claimed.id == slack.id and claimed.attempts == 1
    assert await queue.recover() == [slack.id]
    assert (await queue.get(slack.id)) is not None
    await db.close()



async def test_remember_reply_merges_into_reply_to_for_every_later_reader(tmp_path: Path) -> None:
    """What an adapter posted for a job is stored with it: a restarted process (a new queue on the
    same file) claims the job with it, and a redelivery of the stored outcome sees it too."""
    db = await BotDatabase.open(tmp_path / "bot.sqlite")
    queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=10)
    asked = replace(make_job("slack", "ann"), reply_to={"thread_ts": "1.0", "at": 1712345678.123456})
    job = (await queue.put(asked)).job
    assert await queue.remember_reply(job.id, {"message_ts": "1.000100"})
    assert await queue.remember_reply(job.id, {"message_ts": "1.000200", "message_channel": "C1"})
    assert not await queue.remember_reply(job.id + 1, {"message_ts": "9.9"})  # no such job
    await queue.close()  # stopping writes what is held
    await db.close()

    reopened = await BotDatabase.open(tmp_path / "bot.sqlite")
    restarted = SqliteJobQueue(reopened, max_pending=10, max_pending_per_user=10)
    expected = {
        "thread_ts": "1.0", "at": 1712345678.123456,  # the adapter's own keys, exactly as they were
        "message_ts": "1.000200", "message_channel": "C1",  # the latest value of each key wins
    }
    claimed = await restarted.claim(["slack"])
    assert claimed is not None and dict(claimed.reply_to) == expected
    outcome = NoticeOutcome("done")
    assert await restarted.complete(job.id, JobStatus.DONE, outcome, None)
    [(undelivered, _)] = await restarted.undelivered(["slack"])
    assert dict(undelivered.reply_to) == expected
    await reopened.close()


def delivered(path: Path) -> list[tuple[int, bool]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, delivered_at IS NOT NULL FROM jobs ORDER BY id").fetchall()


async def answered(path: Path, *users: str) -> tuple[BotDatabase, SqliteJobQueue, list[int]]:
    """A queue whose jobs (one per user) have all run and finished, none marked delivered."""
    db = await BotDatabase.open(path)
    queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=10)
    ids = [(await queue.put(make_job("slack", user))).job.id for user in users]
    for job_id in ids:
        assert (await queue.claim(["slack"])) is not None
        assert await queue.complete(job_id, JobStatus.DONE, NoticeOutcome("done"), None)
    return db, queue, ids


async def test_a_sent_reply_is_recorded_with_the_next_write_not_a_write_of_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite"
    db, queue, [first] = await answered(path, "ann")
    second = (await queue.put(make_job("slack", "bob"))).job
    before = db.commits
    await queue.mark_delivered(first)
    assert db.commits == before  # no write of its own...
    assert await queue.undelivered(["slack"]) == []  # ...and not sent again meanwhile
    assert (await queue.claim(["slack"])) is not None  # the next write carries it
    assert db.commits == before + 1
    assert delivered(path) == [(first, True), (second.id, False)]
    await queue.close()
    await db.close()


async def test_a_sent_reply_is_recorded_soon_when_nothing_else_writes_and_at_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite"
    db, queue, ids = await answered(path, "ann", "bob")
    await queue.mark_delivered(ids[0])
    deadline = asyncio.get_running_loop().time() + DEFERRED_FLUSH_S + 5
    while delivered(path)[0] != (ids[0], True):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await queue.mark_delivered(ids[1])
    await queue.close()  # stopping writes what is held
    assert delivered(path) == [(ids[0], True), (ids[1], True)]
    await db.close()


async def test_a_remembered_message_rides_on_the_next_write_and_is_read_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite"
    db = await BotDatabase.open(path)
    queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=10)
    job = (await queue.put(make_job("slack", "ann"))).job
    before = db.commits
    assert await queue.remember_reply(job.id, {"message_ts": "1.5"})
    assert db.commits == before  # no write of its own...
    stored = await queue.get(job.id)
    assert stored is not None and stored.reply_to["message_ts"] == "1.5"  # ...yet read at once
    claimed = await queue.claim(["slack"])  # the next write carries it, and claims with it
    assert claimed is not None and claimed.reply_to["message_ts"] == "1.5"
    assert db.commits == before + 1
    with sqlite3.connect(path) as raw:
        [(reply_to,)] = raw.execute("SELECT reply_to FROM jobs").fetchall()
    assert '"message_ts": "1.5"' in reply_to
    await queue.close()
    await db.close()


async def test_a_remembered_message_is_written_soon_when_nothing_else_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite"
    db = await BotDatabase.open(path)
    queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=10)
    job = (await queue.put(make_job("slack", "ann"))).job
    assert await queue.remember_reply(job.id, {"message_ts": "2.5"})

    def stored() -> str:
        with sqlite3.connect(path) as raw:
            return str(raw.execute("SELECT reply_to FROM jobs").fetchone()[0])

    deadline = asyncio.get_running_loop().time() + DEFERRED_FLUSH_S + 5
    while '"message_ts": "2.5"' not in stored():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await queue.close()
    await db.close()
