"""The core end to end with a scripted engine and recording adapters: fairness, isolation,
duplicates, caps, cancel, restart, shutdown, streaming, follow-ups, history, ingest, errors."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, RecordingAdapter, StartCore, make_job

from bot.core import BotCore, CoreOptions
from bot.errors import (
    DuplicateJobError,
    FolioError,
    NotFoundError,
    PermissionDeniedError,
    QueueFullError,
)
from bot.history import build_record
from bot.jobs import AnswerOutcome, Attachment, Job, JobKind, JobStatus
from bot.migrations import BotDatabase
from bot.queue import SqliteJobQueue
from bot.replies import APOLOGY
from bot.worker import FINAL_EDIT_WINDOW
from rag.types import Answer


def statuses(db_path: Path) -> dict[int, str]:
    with sqlite3.connect(db_path) as db:
        return dict(db.execute("SELECT id, status FROM jobs").fetchall())


def expected_round_robin(jobs: dict[int, tuple[str, str]]) -> list[int]:
    """An independent model of the fair order: the first job ran alone; then, repeatedly, the
    user served least recently (never served first, ties by oldest job) gets their oldest job."""
    first = min(jobs)
    order = [first]
    last_served = {jobs[first]: 0}
    remaining = sorted(j for j in jobs if j != first)
    step = 0
    while remaining:
        step += 1
        waiting = {jobs[j] for j in remaining}

        def rank(user: tuple[str, str]) -> tuple[int, int]:
            oldest = min(j for j in remaining if jobs[j] == user)
            return (last_served.get(user, -1), oldest)

        user = min(waiting, key=rank)
        job_id = min(j for j in remaining if jobs[j] == user)
        order.append(job_id)
        remaining.remove(job_id)
        last_served[user] = step
    return order


async def test_fifty_questions_from_five_users_on_two_platforms(start_core: StartCore) -> None:
    engine = FakeEngine()
    gate = engine.hold()  # the first job waits until everything is queued
    alpha, beta = RecordingAdapter("alpha"), RecordingAdapter("beta")
    core = await start_core(engine, alpha, beta, max_pending=100, max_pending_per_user=20)
    users = [("alpha", "ann"), ("alpha", "bob"), ("beta", "cat"), ("beta", "dan"), ("alpha", "eve")]
    collection = {"alpha": "handbook", "beta": "contracts"}
    jobs = [
        make_job(
            platform,
            user,
            f"q{round_}-{user}",
            collection=collection[platform],
            channel=f"chan-{platform}",
            thread=f"thread-{user}",
        )
        for round_ in range(10)
        for platform, user in users
    ]
    accepted = await asyncio.gather(*(core.submit(job) for job in jobs))
    by_id = {a.job_id: a.job for a in accepted}
    gate.set()
    await alpha.wait_until(lambda: len(alpha.finals()) == 30)
    await beta.wait_until(lambda: len(beta.finals()) == 20)

    finals = alpha.finals() + beta.finals()
    assert sorted(e.job.id for e in finals) == sorted(by_id)  # each answered exactly once
    for event in finals:
        job = by_id[event.job.id]
        assert event.kind == "post_answer"
        assert event.job.platform == job.platform  # routed to its own platform's adapter
        assert event.job.reply_to == job.reply_to == {
            "channel": job.channel, "thread": job.thread, "user": job.user
        }
        assert event.payload.text == f"In {job.collection}: the answer to {job.text} is forty two."
        events = (alpha if job.platform == "alpha" else beta).for_job(job.id)
        assert events[0].kind == "acknowledge" and events[-1] is event
    answered_questions = [call.question for call in engine.calls]
    expected = expected_round_robin({i: j.requester for i, j in by_id.items()})
    assert answered_questions == [by_id[i].text for i in expected]
    assert len(engine.thread_ids) == 1 and threading.get_ident() not in engine.thread_ids
    assert set(statuses(Path(core._db_path)).values()) == {"done"}


async def test_a_duplicate_delivery_is_rejected_and_answered_once(start_core: StartCore) -> None:
    engine, adapter = FakeEngine(), RecordingAdapter("alpha")
    other = RecordingAdapter("beta")
    core = await start_core(engine, adapter, other)
    first = await core.submit(make_job("alpha", "ann", "hello?", key="event-1"))
    with pytest.raises(DuplicateJobError):
        await core.submit(make_job("alpha", "ann", "hello?", key="event-1"))
    await adapter.wait_final(first.job_id)
    with pytest.raises(DuplicateJobError):  # also after it was answered
        await core.submit(make_job("alpha", "ann", "hello?", key="event-1"))
    # Keys are per platform: the same id from another platform is a different event.
    second = await core.submit(make_job("beta", "ann", "hello?", key="event-1"))
    await other.wait_final(second.job_id)
    assert len(adapter.finals()) == 1 and len(engine.calls) == 2


async def test_caps_reject_with_one_line_and_queue_nothing(
    start_core: StartCore, db_path: Path
) -> None:
    engine = FakeEngine()
    gate = engine.hold()
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, max_pending=3, max_pending_per_user=2)
    running = await core.submit(make_job("alpha", "ann"))
    await adapter.wait_kind(running.job_id, "post_status")  # in the engine: no longer pending
    await core.submit(make_job("alpha", "ann"))
    await core.submit(make_job("alpha", "ann"))
    with pytest.raises(QueueFullError) as per_user:
        await core.submit(make_job("alpha", "ann"))
    assert "You already have 2 requests waiting" in per_user.value.message
    await core.submit(make_job("alpha", "bob"))
    with pytest.raises(QueueFullError) as full:
        await core.submit(make_job("alpha", "cat"))
    assert full.value.message.startswith("The queue is full")
    for error in (per_user.value, full.value):
        assert "\n" not in error.message
    assert len(statuses(db_path)) == 4
    gate.set()
    await adapter.wait_until(lambda: len(adapter.finals()) == 4)


async def test_cancel_a_queued_job(start_core: StartCore, db_path: Path) -> None:
    engine = FakeEngine()
    gate = engine.hold()
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    first = await core.submit(make_job("alpha", "ann", "first"))
    second = await core.submit(make_job("alpha", "bob", "second"))
    with pytest.raises(PermissionDeniedError):
        await core.cancel("alpha", "ann", second.job_id)
    with pytest.raises(PermissionDeniedError):  # same user name on another platform: not bob
        await core.cancel("beta", "bob", second.job_id)
    cancelled = await core.cancel("alpha", "bob")  # latest of bob's
    assert cancelled.id == second.job_id
    final = await adapter.wait_final(second.job_id)
    assert (final.kind, final.payload) == ("post_error", "Cancelled.")
    with pytest.raises(NotFoundError):
        await core.cancel("alpha", "bob")
    gate.set()
    await adapter.wait_final(first.job_id)
    assert [c.question for c in engine.calls] == ["first"]
    assert statuses(db_path) == {first.job_id: "done", second.job_id: "cancelled"}
    with pytest.raises(FolioError, match="already finished"):
        await core.cancel("alpha", "ann", first.job_id)


async def test_cancel_a_running_generation_stops_within_a_second(
    start_core: StartCore, db_path: Path
) -> None:
    engine = FakeEngine(token_delay_s=0.05)
    engine.enqueue(" ".join(["word"] * 400))  # 20 s if not stopped
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    job = await core.submit(make_job("alpha", "ann"))
    await adapter.wait_kind(job.job_id, "stream_partial")
    started = time.monotonic()
    await core.cancel("alpha", "ann", job.job_id)
    final = await adapter.wait_final(job.job_id, within=5)
    assert final.at - started < 1.0
    assert (final.kind, final.payload) == ("post_error", "Cancelled.")
    assert statuses(db_path)[job.job_id] == "cancelled"
    after = await core.submit(make_job("alpha", "ann", "next"))  # the worker goes on
    assert (await adapter.wait_final(after.job_id)).kind == "post_answer"
    (entry, *_) = await core.history("alpha", "ann")
    assert entry.status == "done" and (await core.history("alpha", "ann"))[1].status == "cancelled"


async def test_jobs_left_running_by_a_crash_are_answered_after_restart(
    start_core: StartCore, db_path: Path
) -> None:
    db = await BotDatabase.open(db_path)
    queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=10)
    crashed = (await queue.put(make_job("alpha", "ann", "was running"))).job
    waiting = (await queue.put(make_job("alpha", "bob", "was waiting"))).job
    assert (await queue.claim(["alpha"])) is not None  # running when the process "died"
    await db.close()

    engine, adapter = FakeEngine(), RecordingAdapter("alpha")
    await start_core(engine, adapter)
    await adapter.wait_until(lambda: len(adapter.finals()) == 2)
    assert sorted(e.job.id for e in adapter.finals()) == [crashed.id, waiting.id]
    assert sorted(c.question for c in engine.calls) == ["was running", "was waiting"]
    assert set(statuses(db_path).values()) == {"done"}


async def test_a_stored_but_undelivered_answer_is_delivered_not_regenerated(
    start_core: StartCore, db_path: Path
) -> None:
    db = await BotDatabase.open(db_path)
    queue = SqliteJobQueue(db, max_pending=10, max_pending_per_user=10)
    await queue.put(make_job("alpha", "ann", "q"))
    job = await queue.claim(["alpha"])
    assert job is not None
    outcome = AnswerOutcome(Answer("stored answer", [], [], abstained=False))
    assert await queue.complete(job.id, JobStatus.DONE, outcome, build_record(job, JobStatus.DONE,
                                                                              outcome))
    assert not await queue.complete(job.id, JobStatus.DONE, outcome, None)  # never twice
    await db.close()  # "crashed" before the reply reached the platform

    engine, adapter = FakeEngine(), RecordingAdapter("alpha")
    await start_core(engine, adapter)
    final = await adapter.wait_final(job.id)
    assert final.payload.text == "stored answer" and engine.calls == []


async def test_stop_requeues_a_long_generation_and_restart_answers_it(db_path: Path) -> None:
    engine = FakeEngine(token_delay_s=0.05)
    engine.enqueue(" ".join(["word"] * 400))
    adapter = RecordingAdapter("alpha")
    core = BotCore(engine, db_path, CoreOptions(edit_interval_s=0, stop_grace_s=0.2))
    core.register(adapter)
    await core.start()
    job = await core.submit(make_job("alpha", "ann", "long one"))
    await adapter.wait_kind(job.job_id, "stream_partial")
    started = time.monotonic()
    await core.stop()
    assert time.monotonic() - started < 2.0
    assert statuses(db_path)[job.job_id] == "pending" and adapter.finals() == []
    with pytest.raises(FolioError, match="restarting"):
        await core.submit(make_job("alpha", "ann"))

    again = RecordingAdapter("alpha")
    restarted = BotCore(FakeEngine(), db_path, CoreOptions(edit_interval_s=0))
    restarted.register(again)
    async with restarted:
        final = await again.wait_final(job.job_id)
    assert final.kind == "post_answer" and "long one" in final.payload.text


async def test_stop_lets_a_short_job_finish(db_path: Path) -> None:
    engine = FakeEngine(token_delay_s=0.02)
    adapter = RecordingAdapter("alpha")
    core = BotCore(engine, db_path, CoreOptions(edit_interval_s=0, stop_grace_s=5))
    core.register(adapter)
    await core.start()
    job = await core.submit(make_job("alpha", "ann"))
    await adapter.wait_kind(job.job_id, "stream_partial")
    await core.stop()
    assert statuses(db_path)[job.job_id] == "done"
    assert [e.kind for e in adapter.finals()] == ["post_answer"]


async def test_streaming_edits_are_throttled_and_end_with_the_final_answer(
    start_core: StartCore,
) -> None:
    engine = FakeEngine(token_delay_s=0.01)
    text = " ".join(f"w{i}" for i in range(60))  # ~0.6 s of writing
    engine.enqueue(text)
    adapter = RecordingAdapter("alpha")
    interval = 0.15
    core = await start_core(engine, adapter, edit_interval_s=interval)
    job = await core.submit(make_job("alpha", "ann"))
    final = await adapter.wait_final(job.job_id)
    events = adapter.for_job(job.job_id)
    edits = [e for e in events if e.kind != "acknowledge"]
    assert edits[-1] is final and final.payload.text == text
    # Every edit waits out the interval, except the first words, which replace the status line
    # at once (one extra edit per answer, so the user sees text as soon as there is some).
    gaps = [
        b.at - a.at
        for a, b in itertools.pairwise(edits)
        if not (b.kind == "stream_partial" and a.kind != "stream_partial")
    ]
    assert min(gaps[:-1]) >= interval - 0.005
    # The final edit may come sooner, but never as the sixth edit within five intervals.
    relayed = edits[1:]  # after the acknowledgement
    if len(relayed) > FINAL_EDIT_WINDOW:
        assert final.at - relayed[-1 - FINAL_EDIT_WINDOW].at >= FINAL_EDIT_WINDOW * interval - 0.01
    first = next(i for i, e in enumerate(edits) if e.kind == "stream_partial")
    assert first > 0 and edits[first - 1].kind == "post_status"
    partials = [e.payload for e in edits if e.kind == "stream_partial"]
    assert 2 <= len(partials) <= 0.6 / interval + 3
    assert all(text.startswith(p) for p in partials)  # whole text so far, growing
    assert partials == sorted(partials, key=len)


async def test_the_final_answer_is_not_held_back_for_the_next_edit_slot(
    start_core: StartCore,
) -> None:
    engine = FakeEngine(token_delay_s=0.01)
    engine.enqueue("Refunds take fourteen days.")
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, edit_interval_s=2.0)
    job = await core.submit(make_job("alpha", "ann"))
    final = await adapter.wait_final(job.job_id, within=5)
    edits = [e for e in adapter.for_job(job.job_id) if e.kind != "acknowledge"]
    assert len(edits) <= FINAL_EDIT_WINDOW  # a short answer: few edits
    # Done writing a moment after its first words: the final follows at once, not 2 s later.
    assert final.at - edits[0].at < 1.0


async def test_a_long_stream_keeps_a_slot_free_so_the_final_reply_never_waits(
    start_core: StartCore,
) -> None:
    returned: list[float] = []

    class StampedEngine(FakeEngine):
        def answer(self, question: str, **kwargs: Any) -> Answer:
            answer = super().answer(question, **kwargs)
            returned.append(time.monotonic())
            return answer

    engine = StampedEngine(token_delay_s=0.02)
    engine.enqueue(" ".join(f"w{i}" for i in range(90)))  # ~1.8 s of writing
    adapter = RecordingAdapter("alpha")
    interval = 0.2
    core = await start_core(engine, adapter, edit_interval_s=interval)
    job = await core.submit(make_job("alpha", "ann"))
    final = await adapter.wait_final(job.job_id)
    relayed = [e.at for e in adapter.for_job(job.job_id) if e.kind != "acknowledge"][:-1]
    assert len(relayed) > FINAL_EDIT_WINDOW  # the stream used up the platform's edits
    # Never FINAL_EDIT_WINDOW streamed edits within that many intervals: one slot stays free...
    span = FINAL_EDIT_WINDOW * interval - 0.01
    for first, last in zip(relayed, relayed[FINAL_EDIT_WINDOW - 1 :], strict=False):
        assert last - first >= span
    # ...so the final reply follows the engine without waiting for an edit slot (before, it
    # waited until five intervals after the fifth-last edit: up to one interval).
    assert final.at - returned[0] < interval


async def test_status_flows_from_queued_to_searching_to_writing_to_final(
    start_core: StartCore,
) -> None:
    engine = FakeEngine(token_delay_s=0.01)
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, edit_interval_s=0)
    job = await core.submit(make_job("alpha", "ann"))
    await adapter.wait_final(job.job_id)
    kinds = [e.kind for e in adapter.for_job(job.job_id)]
    assert kinds[0] == "acknowledge" and kinds[-1] == "post_answer"
    assert kinds[1] == "post_status" and adapter.for_job(job.job_id)[1].payload.startswith("search")
    assert "stream_partial" in kinds


async def test_follow_ups_get_the_same_conversations_turns_only(start_core: StartCore) -> None:
    engine, adapter = FakeEngine(), RecordingAdapter("alpha")
    core = await start_core(engine, adapter)

    async def ask(
        user: str, text: str, *, thread: str = "", channel: str = "c1", collection: str = "docs"
    ) -> None:
        job = make_job("alpha", user, text, thread=thread, channel=channel, collection=collection)
        await adapter.wait_final((await core.submit(job)).job_id)

    await ask("ann", "what is X?", thread="t1")
    await ask("bob", "and Y?", thread="t1")  # same thread, another person: same conversation
    await ask("ann", "unrelated", thread="t2")
    await ask("ann", "in channel", channel="c2")
    await ask("bob", "bob in channel", channel="c2")  # no thread: his own conversation
    await ask("ann", "other collection", thread="t1", collection="other")
    history = {c.question: [t.question for t in c.history] for c in engine.calls}
    assert history == {
        "what is X?": [],
        "and Y?": ["what is X?"],
        "unrelated": [],
        "in channel": [],
        "bob in channel": [],
        "other collection": [],
    }
    turn = engine.calls[1].history[0]
    assert turn.answer == "In docs: the answer to what is X? is forty two."


async def test_history_is_per_user_and_exports_as_jsonl(start_core: StartCore) -> None:
    engine, adapter = FakeEngine(), RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    for user in ("ann", "bob", "ann"):
        accepted = await core.submit(make_job("alpha", user, f"from {user}", message_id="m1"))
        await adapter.wait_final(accepted.job_id)
    mine = await core.history("alpha", "ann")
    assert [e.question for e in mine] == ["from ann", "from ann"]
    assert mine[0].citations == [{"document": "docs.pdf", "page": 3, "quote": "a quote"}]
    assert await core.history("beta", "ann") == []
    out = io.StringIO()
    assert await core.export_history(out) == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["user_id"] for r in rows] == ["ann", "bob", "ann"]
    row = rows[0]
    assert row["model"] == "fake-model" and row["message_id"] == "m1"
    assert row["retrieved"][0]["document"] == "docs.pdf"
    for key in ("queue_wait_s", "retrieval_s", "first_token_s", "total_s", "platform", "channel"):
        assert row[key] is not None


async def test_ingest_job_reports_and_drops_the_stored_file(
    start_core: StartCore, db_path: Path
) -> None:
    engine, adapter = FakeEngine(token_delay_s=0.05), RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    good = await core.submit(
        make_job("alpha", "admin", kind=JobKind.INGEST, attachment=Attachment("a.pdf", b"%PDF-1"))
    )
    bad = await core.submit(
        make_job("alpha", "admin", kind=JobKind.INGEST, attachment=Attachment("b.pdf", b"junk"))
    )
    report = (await adapter.wait_final(good.job_id)).payload
    assert (report.files, report.pages, report.chunks) == (1, 2, 4)
    failed = (await adapter.wait_final(bad.job_id)).payload
    assert failed.failures[0].reason == "not a PDF"
    assert [(n, c) for n, _, c in engine.ingested] == [("a.pdf", "docs"), ("b.pdf", "docs")]
    assert any(e.kind == "post_ingest_progress" for e in adapter.for_job(good.job_id))
    assert [d.name for d in await core.documents("docs")] == ["a.pdf"]
    forget = await core.submit(make_job("alpha", "admin", "a.pdf", kind=JobKind.FORGET))
    assert (await adapter.wait_final(forget.job_id)).payload.startswith("Forgot a.pdf")
    with sqlite3.connect(db_path) as db:
        kept = db.execute("SELECT COUNT(*) FROM jobs WHERE attachment IS NOT NULL").fetchone()
    assert kept == (0,)


async def test_engine_errors_become_replies(
    start_core: StartCore, caplog: pytest.LogCaptureFixture
) -> None:
    engine, adapter = FakeEngine(), RecordingAdapter("alpha")
    engine.enqueue(RuntimeError("model exploded"), NotFoundError("No such document: x.pdf."))
    core = await start_core(engine, adapter)
    with caplog.at_level(logging.ERROR):
        first = await core.submit(make_job("alpha", "ann"))
        unexpected = await adapter.wait_final(first.job_id)
    second = await core.submit(make_job("alpha", "ann"))
    expected = await adapter.wait_final(second.job_id)
    assert (unexpected.kind, unexpected.payload) == ("post_error", APOLOGY)
    assert "model exploded" not in unexpected.payload
    assert any(r.exc_info and "model exploded" in str(r.exc_info[1]) for r in caplog.records)
    assert (expected.kind, expected.payload) == ("post_error", "No such document: x.pdf.")
    assert {e.status for e in await core.history("alpha", "ann")} == {"failed"}


async def test_position_and_eta_come_from_measured_run_times(start_core: StartCore) -> None:
    engine = FakeEngine(token_delay_s=0.02)
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, default_eta_s=30.0)
    gate = engine.hold()
    first = await core.submit(make_job("alpha", "ann"))
    await adapter.wait_kind(first.job_id, "post_status")
    second = await core.submit(make_job("alpha", "bob"))
    assert (second.position, second.eta_s) == (1, 60.0)  # one running + itself, by the default
    third = await core.submit(make_job("alpha", "bob"))
    fourth = await core.submit(make_job("alpha", "cat"))
    assert third.position == 2
    assert fourth.position == 2  # cat, never served, goes before bob's second
    gate.set()
    await adapter.wait_until(lambda: len(adapter.finals()) == 4)
    later = await core.submit(make_job("alpha", "dan"))
    assert 0 < later.eta_s < 5  # measured: each job took a fraction of a second
    await adapter.wait_final(later.job_id)


async def test_engine_only_ever_runs_on_one_thread(start_core: StartCore) -> None:
    engine, adapter = FakeEngine(), RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    jobs: list[Job] = [make_job("alpha", f"u{i}") for i in range(5)]
    for job in jobs:
        await core.submit(job)
    await asyncio.gather(core.documents("docs"), core.documents("docs"))
    await adapter.wait_until(lambda: len(adapter.finals()) == 5)
    assert len(engine.thread_ids) == 1 and threading.get_ident() not in engine.thread_ids


async def test_deleting_the_question_message_cancels_its_job(start_core: StartCore) -> None:
    engine = FakeEngine()
    gate = engine.hold()
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    first = await core.submit(make_job("alpha", "ann", "first", message_id="m-1"))
    second = await core.submit(make_job("alpha", "bob", "second", message_id="m-2"))
    assert await core.cancel_for_deleted_message("alpha", "m-unknown") is None
    assert await core.cancel_for_deleted_message("beta", "m-2") is None  # another platform's id
    cancelled = await core.cancel_for_deleted_message("alpha", "m-2")
    assert cancelled is not None and cancelled.id == second.job_id
    final = await adapter.wait_final(second.job_id)
    assert (final.kind, final.payload) == ("post_error", "Cancelled.")
    gate.set()
    assert (await adapter.wait_final(first.job_id)).kind == "post_answer"
    assert await core.cancel_for_deleted_message("alpha", "m-1") is None  # already answered
    assert [c.question for c in engine.calls] == ["first"]
