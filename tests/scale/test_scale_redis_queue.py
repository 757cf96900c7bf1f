"""The Redis queue against a real redis-server: the `JobQueue` behaviours of the SQLite queue
(dedupe, caps, fair order, complete once, cancel, requeue, recover, undelivered), shared by
several queues playing separate processes, takeover after the claim timeout, heartbeats, waking
idle workers of other processes, and the settings that choose it."""

from __future__ import annotations

import asyncio
import io
import os
import random
import socket
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fakes import FakeEngine, RecordingAdapter, make_job

from adapters.console import ConsoleChat, console_platform
from bot.app import load_settings
from bot.core import BotCore, CoreOptions
from bot.errors import ConfigError, DuplicateJobError, QueueFullError
from bot.history import HistoryRecord, build_record
from bot.jobs import Attachment, ErrorOutcome, Job, JobKind, JobStatus, NoticeOutcome
from bot.migrations import BotDatabase
from bot.queue import SqliteJobQueue, fair_order
from bot.redis_queue import QueueUnavailableError, RedisJobQueue, RedisQueueConfig

pytest.register_assert_rewrite("scale_redis")
from scale_redis import start_redis, stop_redis  # noqa: E402

if TYPE_CHECKING:
    from scale_redis import MakeQueue

pytest_plugins = ["scale_redis"]  # its fixtures: redis_server, redis_config, make_queue


def done(job: Job, text: str = "ok") -> tuple[JobStatus, NoticeOutcome, HistoryRecord]:
    outcome = NoticeOutcome(text)
    return JobStatus.DONE, outcome, build_record(job, JobStatus.DONE, outcome)


async def finish(queue: RedisJobQueue, job: Job) -> bool:
    status, outcome, record = done(job)
    return await queue.complete(job.id, status, outcome, record)


def history_rows(db: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT job_id, status, answer FROM history ORDER BY id").fetchall()


# ---- the JobQueue protocol ------------------------------------------------------------------


async def test_a_duplicate_delivery_is_refused_by_every_process(make_queue: MakeQueue) -> None:
    a, b = await make_queue("a"), await make_queue("b")
    first = await a.put(make_job("slack", "ann", key="Ev1"))
    with pytest.raises(DuplicateJobError, match=f"job {first.job.id}"):
        await b.put(make_job("slack", "ann", key="Ev1"))
    with pytest.raises(DuplicateJobError):
        await a.put(make_job("slack", "bob", key="Ev1"))  # the key, not the user, decides
    other = await b.put(make_job("discord", "ann", key="Ev1"))  # keys are per platform
    assert other.job.id == first.job.id + 1


async def test_concurrent_puts_of_one_key_store_it_once(make_queue: MakeQueue) -> None:
    queues = [await make_queue(name) for name in "abcd"]
    results = await asyncio.gather(
        *(q.put(make_job("slack", "ann", key="same")) for q in queues for _ in range(3)),
        return_exceptions=True,
    )
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert len(stored) == 1
    assert all(isinstance(r, DuplicateJobError) for r in results if r not in stored)


async def test_caps_refuse_with_one_line_and_store_nothing(make_queue: MakeQueue) -> None:
    queue = await make_queue("a", max_pending=4, max_pending_per_user=2)
    await queue.put(make_job("p", "ann"))
    await queue.put(make_job("p", "ann"))
    with pytest.raises(QueueFullError, match="You already have 2 requests waiting"):
        await queue.put(make_job("p", "ann", key="third"))
    await queue.put(make_job("p", "bob"))
    await queue.put(make_job("p", "cy"))
    with pytest.raises(QueueFullError, match=r"The queue is full \(4 requests waiting\)"):
        await queue.put(make_job("p", "dee"))
    # Nothing was stored for the refused ones: the key is free, and a claim frees a place.
    assert await queue.claim(["p"]) is not None
    retried = await queue.put(make_job("p", "ann", key="third"))
    assert retried.job.id == 5


async def test_fair_order_and_positions_match_the_sqlite_queue(make_queue: MakeQueue) -> None:
    """Random puts and claims from two processes follow `fair_order` step by step."""
    queues = [await make_queue("a"), await make_queue("b")]
    rng = random.Random(9)
    users = [("p", "ann"), ("p", "bob"), ("q", "cy"), ("q", "dee"), ("p", "eve")]
    pending: list[tuple[int, tuple[str, str]]] = []
    last_seq: dict[tuple[str, str], int] = {}
    served = 0
    for _ in range(120):
        queue = rng.choice(queues)
        if pending and rng.random() < 0.45:
            job = await queue.claim(["p", "q"])
            assert job is not None
            expected = fair_order(pending, last_seq)[0]
            assert job.id == expected
            pending = [(i, u) for i, u in pending if i != job.id]
            served += 1
            last_seq[job.requester] = served
            assert await finish(queue, job)
        else:
            platform, user = rng.choice(users)
            placed = await queue.put(make_job(platform, user))
            pending.append((placed.job.id, (platform, user)))
            assert placed.position == fair_order(pending, last_seq).index(placed.job.id) + 1
    # Draining follows the model to the end.
    while pending:
        job = await queues[0].claim(["p", "q"])
        assert job is not None and job.id == fair_order(pending, last_seq)[0]
        pending = [(i, u) for i, u in pending if i != job.id]
        served += 1
        last_seq[job.requester] = served
    assert await queues[1].claim(["p", "q"]) is None


async def test_claim_only_takes_jobs_of_the_callers_platforms(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    slack = (await queue.put(make_job("slack", "ann"))).job
    assert await queue.claim(["discord"]) is None
    assert await queue.claim([]) is None
    claimed = await queue.claim(["discord", "slack"])
    assert claimed is not None and claimed.id == slack.id and claimed.attempts == 1
    assert claimed.status is JobStatus.RUNNING and claimed.started_at is not None


async def test_complete_finishes_once_and_logs_in_the_finishers_history(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    a, b = await make_queue("a"), await make_queue("b")
    job = (await a.put(make_job("p", "ann", "what is x?"))).job
    claimed = await b.claim(["p"])
    assert claimed is not None
    status, outcome, record = done(claimed, "x is y")
    assert not await a.complete(claimed.id, status, outcome, record)
    assert await b.complete(claimed.id, status, outcome, record)
    assert not await b.complete(claimed.id, status, outcome, record)
    stored = await a.get(job.id)
    assert stored is not None and stored.status is JobStatus.DONE
    assert stored.finished_at is not None and stored.finished_at >= (stored.started_at or 0)
    assert history_rows(tmp_path / "b.sqlite") == [(job.id, "done", "x is y")]
    assert history_rows(tmp_path / "a.sqlite") == []
    durations = await a.recent_durations(5)
    assert len(durations) == 1 and 0 <= durations[0] < 5


async def test_the_attachment_is_kept_until_the_job_finishes(
    make_queue: MakeQueue, redis_config: RedisQueueConfig
) -> None:
    queue = await make_queue()
    pdf = bytes(range(256)) * 40  # every byte value survives the trip
    job = make_job("p", "admin", kind=JobKind.INGEST, attachment=Attachment("a.pdf", pdf))
    job_id = (await queue.put(job)).job.id
    light = await queue.get(job_id)
    assert light is not None and light.attachment is None  # lookups do not carry megabytes
    claimed = await queue.claim(["p"])
    assert claimed is not None and claimed.attachment == Attachment("a.pdf", pdf)
    assert await finish(queue, claimed)
    from redis.asyncio import Redis

    raw = Redis.from_url(redis_config.url)
    try:
        assert not await raw.hexists(f"{redis_config.prefix}:job:{job_id}", "attachment")
        ttl = await raw.ttl(f"{redis_config.prefix}:job:{job_id}")
        assert 0 < ttl <= redis_config.retention_s  # finished jobs expire
    finally:
        await raw.aclose()


async def test_cancel_pending_only_while_pending(make_queue: MakeQueue, tmp_path: Path) -> None:
    queue = await make_queue()
    first = (await queue.put(make_job("p", "ann"))).job
    second = (await queue.put(make_job("p", "ann", message_id="m2"))).job
    outcome = ErrorOutcome("Cancelled.")
    record = build_record(second, JobStatus.CANCELLED, outcome)
    assert await queue.cancel_pending(second.id, outcome, record)
    assert not await queue.cancel_pending(second.id, outcome, record)
    assert (await queue.get(second.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    assert await queue.active_for_message("p", "m2") is None
    running = await queue.claim(["p"])
    assert running is not None and running.id == first.id
    assert not await queue.cancel_pending(first.id, outcome, None)
    assert await queue.claim(["p"]) is None  # the cancelled job never runs
    assert history_rows(tmp_path / "a.sqlite") == [(second.id, "cancelled", "")]


async def test_lookups_for_cancel_and_deleted_messages(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    old = (await queue.put(make_job("p", "ann", message_id="m1"))).job
    new = (await queue.put(make_job("p", "ann", message_id="m2"))).job
    assert (await queue.latest_active("p", "ann")).id == new.id  # type: ignore[union-attr]
    assert await queue.latest_active("p", "bob") is None
    assert await queue.latest_active("q", "ann") is None
    assert (await queue.active_for_message("p", "m1")).id == old.id  # type: ignore[union-attr]
    assert await queue.active_for_message("q", "m1") is None
    assert await queue.active_for_message("p", "") is None
    claimed = await queue.claim(["p"])
    assert claimed is not None and claimed.id == old.id
    running = await queue.active_for_message("p", "m1")
    assert running is not None and running.status is JobStatus.RUNNING
    assert await finish(queue, claimed)
    assert await queue.active_for_message("p", "m1") is None
    assert (await queue.latest_active("p", "ann")).id == new.id  # type: ignore[union-attr]
    assert await queue.get(999_999) is None


async def test_requeue_puts_a_job_back_at_the_front_of_its_users_line(
    make_queue: MakeQueue,
) -> None:
    a, b = await make_queue("a"), await make_queue("b")
    first = (await a.put(make_job("p", "ann"))).job
    await a.put(make_job("p", "ann"))
    claimed = await a.claim(["p"])
    assert claimed is not None and claimed.id == first.id
    await b.requeue(first.id)  # not b's job: nothing happens
    assert (await a.get(first.id)).status is JobStatus.RUNNING  # type: ignore[union-attr]
    await a.requeue(first.id)
    again = await b.claim(["p"])
    assert again is not None and again.id == first.id and again.attempts == 2
    assert not await finish(a, again)  # a gave it up
    assert await finish(b, again)


async def test_undelivered_waits_out_the_finishers_lease_and_is_taken_once(
    make_queue: MakeQueue,
) -> None:
    a, b = await make_queue("a"), await make_queue("b")
    job = (await a.put(make_job("p", "ann"))).job
    claimed = await a.claim(["p"])
    assert claimed is not None and await finish(a, claimed)
    # The finisher delivers now; nobody else may while its lease (one claim timeout) runs.
    assert await b.undelivered(["p"]) == []
    await asyncio.sleep(1.2)  # a "died" before mark_delivered
    assert await b.undelivered(["q"]) == []
    found = await b.undelivered(["p"])
    assert [(j.id, o) for j, o in found] == [(job.id, NoticeOutcome("ok"))]
    assert await a.undelivered(["p"]) == []  # b holds the lease now: no double delivery
    await b.mark_delivered(job.id)
    await asyncio.sleep(1.2)
    assert await a.undelivered(["p"]) == []


async def test_remember_reply_is_seen_by_every_process(
    make_queue: MakeQueue, redis_config: RedisQueueConfig
) -> None:
    """The status message an adapter posted, stored with the job by one process, is what another
    process claims the job with (and redelivers with), merged over the adapter's own keys."""
    a, b = await make_queue("a"), await make_queue("b")
    asked = replace(
        make_job("slack", "ann"),
        reply_to={"thread_ts": "1.0", "response_url": "https://x/y", "at": 1712345678.123456},
    )
    job = (await a.put(asked)).job
    assert await a.remember_reply(job.id, {"message_ts": "2.000100"})
    assert await a.remember_reply(job.id, {"message_ts": "2.000200", "message_channel": "C1"})
    expected = {
        "thread_ts": "1.0", "response_url": "https://x/y",
        "at": 1712345678.123456,  # not rounded by a round trip through the script's cjson
        "message_ts": "2.000200", "message_channel": "C1",
    }
    fetched = await b.get(job.id)
    assert fetched is not None and dict(fetched.reply_to) == expected
    claimed = await b.claim(["slack"])
    assert claimed is not None and dict(claimed.reply_to) == expected
    assert await b.remember_reply(job.id, {"message_ts": "2.000300"})  # the runner moved on
    assert await finish(b, claimed)
    await asyncio.sleep(1.2)  # b "died" before delivering: a takes the delivery over
    [(undelivered, _)] = await a.undelivered(["slack"])
    assert dict(undelivered.reply_to) == expected | {"message_ts": "2.000300"}
    # A job that is gone is not brought back as a fragment by a late remember_reply.
    from redis.asyncio import Redis

    assert not await a.remember_reply(job.id + 1000, {"message_ts": "9.9"})
    raw = Redis.from_url(redis_config.url)
    try:
        assert await raw.exists(f"{redis_config.prefix}:job:{job.id + 1000}") == 0
    finally:
        await raw.aclose()


# ---- processes that die, freeze or keep working ----------------------------------------------


async def test_a_silent_consumers_job_is_taken_over_after_the_claim_timeout(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    frozen = await make_queue("frozen", background=False)  # holds a job, never heartbeats
    other = await make_queue("other")
    job = (await frozen.put(make_job("p", "ann"))).job
    assert (await frozen.claim(["p"])) is not None
    assert await other.claim(["p"]) is None  # still within the claim timeout
    assert await other.recover() == []
    await asyncio.sleep(1.2)
    taken = await other.claim(["p"])
    assert taken is not None and taken.id == job.id and taken.attempts == 2
    assert not await finish(frozen, taken)  # the frozen process wakes up: too late
    assert await finish(other, taken)
    assert [r[0] for r in history_rows(tmp_path / "other.sqlite")] == [job.id]
    assert history_rows(tmp_path / "frozen.sqlite") == []


async def test_recover_at_start_requeues_what_a_dead_process_held(make_queue: MakeQueue) -> None:
    dead = await make_queue("dead", background=False)
    job = (await dead.put(make_job("p", "ann"))).job
    assert await dead.claim(["p"]) is not None
    await dead.close()  # the process is gone
    restarted = await make_queue("restarted")
    assert await restarted.recover() == []  # another process may still be working on it
    await asyncio.sleep(1.2)
    assert await restarted.recover() == [job.id]
    assert (await restarted.get(job.id)).status is JobStatus.PENDING  # type: ignore[union-attr]


async def test_heartbeats_keep_a_long_job_with_its_process(make_queue: MakeQueue) -> None:
    alive = await make_queue("alive")
    other = await make_queue("other")
    job = (await alive.put(make_job("p", "ann"))).job
    assert await alive.claim(["p"]) is not None
    for _ in range(6):  # three claim timeouts in all
        await asyncio.sleep(0.5)
        assert await other.claim(["p"]) is None
        assert await other.recover() == []
    running = await other.get(job.id)
    assert running is not None and running.status is JobStatus.RUNNING and running.attempts == 1
    assert await finish(alive, running)


async def test_a_job_queued_anywhere_wakes_idle_workers_everywhere(
    make_queue: MakeQueue, redis_config: RedisQueueConfig
) -> None:
    slow_ticks = replace(redis_config, claim_timeout_s=20.0)  # periodic checks every 5 s
    a, b = await make_queue("a", config=slow_ticks), await make_queue("b", config=slow_ticks)
    woke = asyncio.Event()
    b.on_new_work(woke.set)
    await asyncio.sleep(0.1)  # b's listener subscribes
    woke.clear()
    started = time.monotonic()
    await a.put(make_job("p", "ann"))
    await asyncio.wait_for(woke.wait(), 2.0)
    assert time.monotonic() - started < 0.5  # the message, not the periodic check


async def test_ids_start_above_the_nodes_earlier_sqlite_jobs(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    db = await BotDatabase.open(tmp_path / "old.sqlite")  # a node that used the SQLite queue
    sqlite_queue = SqliteJobQueue(db, max_pending=100, max_pending_per_user=100)
    for _ in range(7):
        await sqlite_queue.put(make_job("p", "ann"))
    await db.close()
    queue = await make_queue("old")
    job = (await queue.put(make_job("p", "ann"))).job
    assert job.id == 8
    claimed = await queue.claim(["p"])
    assert claimed is not None and await finish(queue, claimed)
    assert history_rows(tmp_path / "old.sqlite") == [(8, "done", "ok")]


async def test_an_unreachable_redis_is_one_line_without_the_password(tmp_path: Path) -> None:
    db = await BotDatabase.open(tmp_path / "bot.sqlite")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = RedisQueueConfig(url=f"redis://:s3cret-pw@127.0.0.1:{port}/0")
    try:
        with pytest.raises(QueueUnavailableError) as caught:
            await RedisJobQueue.connect(db, config, max_pending=5, max_pending_per_user=5)
    finally:
        await db.close()
    assert f"redis://127.0.0.1:{port}/0" in caught.value.message
    assert "s3cret" not in caught.value.message and "\n" not in caught.value.message
    assert "s3cret" not in repr(config)


# ---- the bot core on the shared queue --------------------------------------------------------


async def test_two_cores_share_the_queue_and_an_idle_one_answers_at_once(
    redis_config: RedisQueueConfig, tmp_path: Path
) -> None:
    """Whichever core takes the first question stays busy on it; the other one, idle (its own
    poll is 30 s), answers the next question as soon as it is queued, by either core."""
    engines = [FakeEngine(), FakeEngine()]
    gates = [engine.hold() for engine in engines]
    chats = [RecordingAdapter("chat"), RecordingAdapter("chat")]
    options = CoreOptions(edit_interval_s=0.0, stop_grace_s=2.0)
    cores = [
        BotCore(engine, tmp_path / f"{i}.sqlite", options, redis=redis_config)
        for i, engine in enumerate(engines)
    ]
    for core, chat in zip(cores, chats, strict=True):
        core.register(chat)
        await core.start()
    try:
        first = await cores[0].submit(make_job("chat", "ann", "first?"))

        async def started(chat: RecordingAdapter) -> None:
            await chat.wait_kind(first.job_id, "post_status")

        waits = [asyncio.create_task(started(chat)) for chat in chats]
        finished, pending = await asyncio.wait(waits, timeout=5, return_when="FIRST_COMPLETED")
        for task in pending:
            task.cancel()
        busy = waits.index(finished.pop())
        idle = 1 - busy
        gates[idle].set()
        queued_at = time.monotonic()
        second = await cores[0].submit(make_job("chat", "bob", "second?"))
        final = await chats[idle].wait_final(second.job_id, within=5)
        assert time.monotonic() - queued_at < 2
        assert final.kind == "post_answer" and "second?" in final.payload.text
        with pytest.raises(DuplicateJobError):
            await cores[1].submit(make_job("chat", "bob", key=second.job.idempotency_key))
        gates[busy].set()
        await chats[busy].wait_final(first.job_id)
        assert [e.job.id for e in chats[busy].finals()] == [first.job_id]
        assert [e.job.id for e in chats[idle].finals()] == [second.job_id]
        assert [h.job_id for h in await cores[idle].history("chat", "bob")] == [second.job_id]
        assert await cores[busy].history("chat", "bob") == []  # history stays per node
    finally:
        for gate in gates:
            gate.set()
        for core in cores:
            await core.stop()


def test_a_terminal_chat_names_its_jobs_after_its_process_when_the_queue_is_shared() -> None:
    assert console_platform(shared_queue=False) == "console"
    shared = console_platform(shared_queue=True)
    assert shared.startswith("console-") and shared.endswith(f"-{os.getpid()}")
    assert "|" not in shared and ":" not in shared  # separators in the Redis keys


class Screen(io.StringIO):
    """A terminal's output that a test can await."""

    def __init__(self) -> None:
        super().__init__()
        self._written = asyncio.Event()

    def write(self, text: str) -> int:
        self._written.set()
        return super().write(text)

    async def wait_for(self, needle: str, *, times: int = 1, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while self.getvalue().count(needle) < times:
                self._written.clear()
                await self._written.wait()


async def test_two_terminal_chats_on_a_shared_queue_each_answer_only_their_own(
    redis_config: RedisQueueConfig, tmp_path: Path
) -> None:
    """Node B's terminal chat is idle while node A's core is busy: B must not take A's next
    question (it would answer it in B's terminal, where nobody asked)."""
    engines = [FakeEngine(), FakeEngine()]
    gate = engines[0].hold()
    outputs = [Screen(), Screen()]
    options = CoreOptions(edit_interval_s=0.0, stop_grace_s=2.0)
    cores = [
        BotCore(engine, tmp_path / f"{i}.sqlite", options, redis=redis_config)
        for i, engine in enumerate(engines)
    ]
    chats = [
        ConsoleChat(  # two processes' names (one pytest process plays both)
            core, collection="docs", user="ann", stdin=io.StringIO(lines), stdout=out,
            platform=f"console-node{i}-{1000 + i}",
        )
        for i, (core, out, lines) in enumerate(
            zip(cores, outputs, ["first?\nsecond?\n", ""], strict=True)  # B asks nothing
        )
    ]
    for core, chat in zip(cores, chats, strict=True):
        core.register(chat)
        await core.start()
    try:
        asking = asyncio.create_task(chats[0].run())  # ends once both answers are printed
        await outputs[0].wait_for("/cancel to stop", times=2)  # both questions queued
        await asyncio.sleep(1.0)  # node B's idle worker was woken by the new job: let it look
        assert engines[1].calls == []
        gate.set()
        await asyncio.wait_for(asking, 10)
    finally:
        gate.set()
        for core in cores:
            await core.stop()
    assert [c.question for c in engines[0].calls] == ["first?", "second?"]
    assert engines[1].calls == []
    assert outputs[0].getvalue().count("the answer to") == 2
    assert "the answer to" not in outputs[1].getvalue()


# ---- settings ----------------------------------------------------------------------------------


def test_settings_choose_the_backend_and_keep_the_url_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "redis://10.0.0.5:6380/2"
    for name in ("FOLIO_REDIS_URL", "REDIS_URL", "FOLIO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FOLIO_QUEUE__BACKEND", "redis")
    with pytest.raises(ConfigError, match="needs the Redis URL in FOLIO_REDIS_URL or REDIS_URL"):
        load_settings()
    monkeypatch.setenv("REDIS_URL", "redis://:pw-from-paas@127.0.0.1:1/0")
    assert load_settings().redis_url.get_secret_value().endswith(":1/0")  # type: ignore[union-attr]
    monkeypatch.setenv("FOLIO_REDIS_URL", "http://:pw-typo@example/0")
    with pytest.raises(ConfigError) as bad:
        load_settings()
    assert "redis://, rediss:// or unix://" in bad.value.message
    assert "pw-typo" not in bad.value.message
    monkeypatch.setenv("FOLIO_REDIS_URL", url)
    monkeypatch.setenv("FOLIO_QUEUE__CLAIM_TIMEOUT_S", "7.5")
    monkeypatch.setenv("FOLIO_QUEUE__REDIS_PREFIX", "team-a")
    settings = load_settings()
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == url  # FOLIO_ wins
    assert "pw-from-paas" not in repr(settings) and url not in repr(settings)
    core = BotCore.from_settings(settings, FakeEngine())
    assert core._redis == RedisQueueConfig(
        url=url, prefix="team-a", claim_timeout_s=7.5, retention_s=7 * 86400
    )
    monkeypatch.setenv("FOLIO_QUEUE__REDIS_PREFIX", "bad prefix")
    with pytest.raises(ConfigError, match="redis_prefix"):
        load_settings()


def test_a_redis_url_in_the_config_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "folio.toml"
    config.write_text('[queue]\nbackend = "redis"\nredis_url = "redis://:pw@h:6379/0"\n')
    monkeypatch.setenv("FOLIO_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"must not contain secrets: redis_url \(set FOLIO_REDIS"):
        load_settings()


# ---- Redis going away ---------------------------------------------------------------------------


async def test_while_redis_is_down_new_jobs_get_one_line_and_it_recovers_after(
    tmp_path: Path,
) -> None:
    """Its own server, killed and restarted on the same port (empty: it kept nothing)."""
    server = start_redis(tmp_path / "own")
    db_a = await BotDatabase.open(tmp_path / "a.sqlite")
    db_b = await BotDatabase.open(tmp_path / "b.sqlite")
    config = RedisQueueConfig(url=server.url, prefix="down", claim_timeout_s=1.0)
    a = await RedisJobQueue.connect(db_a, config, max_pending=9, max_pending_per_user=9)
    b = await RedisJobQueue.connect(db_b, config, max_pending=9, max_pending_per_user=9)
    woke = asyncio.Event()
    b.on_new_work(woke.set)
    try:
        stop_redis(server.process)
        with pytest.raises(QueueUnavailableError, match="unavailable right now"):
            await a.put(make_job("p", "ann"))
        server = start_redis(tmp_path / "own", port=server.port)
        await asyncio.sleep(1.5)  # b's listener reconnects (it retries every second)
        woke.clear()
        job = (await a.put(make_job("p", "ann"))).job
        await asyncio.wait_for(woke.wait(), 3.0)
        claimed = await b.claim(["p"])
        assert claimed is not None and claimed.id == job.id
        assert await finish(b, claimed)
    finally:
        for queue in (a, b):
            await queue.close()
        await db_a.close()
        await db_b.close()
        stop_redis(server.process)
