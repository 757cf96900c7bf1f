"""The one worker: takes the fairly-next job, runs the engine on its one thread, streams progress.

The engine is slow and synchronous, so it runs in a single dedicated thread (only that thread
ever touches it); the event loop only awaits it. Progress crosses back with
`loop.call_soon_threadsafe` into a `ProgressRelay`, which edits the platform message at most once
per `edit_interval_s`. The outcome is committed with its history row before it is delivered, so a
crash never makes the engine answer the same job twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any, Literal, TypeVar

from adapters.base import Adapter
from bot.errors import FolioError, GenerationCancelled
from bot.history import History, build_record
from bot.jobs import (
    AnswerOutcome,
    ErrorOutcome,
    IngestOutcome,
    Job,
    JobKind,
    JobStatus,
    NoticeOutcome,
    Outcome,
)
from bot.ports import AnswerEngine
from bot.queue import JobQueue
from bot.render import STATUS_SEARCHING, STATUS_WRITING
from bot.replies import user_message
from rag.types import AnswerProgress

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ATTEMPTS = 3
CancelReason = Literal["user", "shutdown"]


class Throughput:
    """Moving average of recent job run times, for "answered in ~40s" at acceptance."""

    def __init__(self, *, default_s: float = 20.0, window: int = 20) -> None:
        self._default = default_s
        self._recent: deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        if seconds >= 0:
            self._recent.append(seconds)

    @property
    def average_s(self) -> float:
        """The mean of the recent run times; the default before anything was measured."""
        return sum(self._recent) / len(self._recent) if self._recent else self._default

    def eta(self, jobs_until_done: int) -> float:
        """Seconds until `jobs_until_done` more jobs (this one included) have run."""
        return self.average_s * max(1, jobs_until_done)


class ProgressRelay:
    """Streams one job's progress to its adapter: at most one edit per interval, latest state wins.

    Engine updates (via `update`) only record the newest state; a pump task sends it when the
    interval allows, so a fast engine never floods the platform and a slow platform never slows
    the engine. The first update waits for the job's acknowledgement, so "queued" never lands
    after "writing".
    """

    def __init__(
        self,
        adapter: Adapter,
        job: Job,
        *,
        interval_s: float,
        acknowledged: asyncio.Future[None] | None = None,
        ack_timeout_s: float = 10.0,
    ) -> None:
        self._adapter = adapter
        self._job = job
        self._interval = interval_s
        self._acknowledged = acknowledged
        self._ack_timeout = ack_timeout_s
        self._latest: tuple[str, tuple[Any, ...]] | None = None
        self._sent: tuple[str, tuple[Any, ...]] | None = None
        self._next_edit_at = 0.0
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name=f"folio-relay-{self._job.id}")

    def on_answer_progress(self, progress: AnswerProgress) -> None:
        if progress.stage == "searching":
            self._set("post_status", STATUS_SEARCHING)
        elif progress.partial_text.strip():
            self._set("stream_partial", progress.partial_text)
        else:
            self._set("post_status", STATUS_WRITING)

    def on_ingest_progress(self, name: str, done: int, total: int) -> None:
        self._set("post_ingest_progress", name, done, total)

    def _set(self, method: str, *args: Any) -> None:
        self._latest = (method, args)
        self._changed.set()

    async def wait_acknowledged(self) -> None:
        """Let the acknowledgement land first (bounded: a stuck platform must not stall us)."""
        if self._acknowledged is not None:
            await asyncio.wait({self._acknowledged}, timeout=self._ack_timeout)
            self._acknowledged = None

    async def _pump(self) -> None:
        await self.wait_acknowledged()
        while True:
            await self._changed.wait()
            if self._closing.is_set():
                return
            delay = self._next_edit_at - time.monotonic()
            first_words = self._latest is not None and self._latest[0] == "stream_partial" and (
                self._sent is None or self._sent[0] != "stream_partial"
            )
            if first_words:
                delay = 0  # the first words replace a status line at once (one extra edit, once)
            if delay > 0:  # rate limit, not synchronisation: wait out the interval or the close
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                if self._closing.is_set():
                    return
            self._changed.clear()
            latest = self._latest
            if latest is None or latest == self._sent:
                continue
            self._sent = latest
            method, args = latest
            try:
                await getattr(self._adapter, method)(self._job, *args)
            except Exception:
                logger.exception(
                    "job %s: %s failed on %s", self._job.id, method, self._job.platform
                )
            self._next_edit_at = time.monotonic() + self._interval

    async def finish(self) -> None:
        """Stop streaming, then wait until the final reply may be sent without breaking the rate."""
        self._closing.set()
        self._changed.set()
        if self._task is not None:
            await self._task
        await self.wait_acknowledged()
        delay = self._next_edit_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # rate limit for the final edit

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()


class _Running:
    """The job in the engine now, and the flag its `cancelled` callback reads (from that thread)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.cancel = threading.Event()
        self.reason: CancelReason | None = None

    def request_cancel(self, reason: CancelReason) -> None:
        if self.reason is None:
            self.reason = reason
        self.cancel.set()


class _Requeue(Exception):
    """The engine stopped because we are shutting down: the job goes back to pending."""


class Worker:
    """Consumes the queue one job at a time and routes each job's output to its platform."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        history: History,
        engine: AnswerEngine,
        executor: Executor,
        adapters: Mapping[str, Adapter],
        throughput: Throughput,
        edit_interval_s: float,
        history_turns: int = 4,
        poll_s: float = 30.0,
    ) -> None:
        self._queue = queue
        self._history = history
        self._engine = engine
        self._executor = executor
        self._adapters = adapters
        self.throughput = throughput
        self._edit_interval = edit_interval_s
        self._history_turns = history_turns
        self._poll_s = poll_s
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._current: _Running | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}

    # ---- control (from the core) ------------------------------------------------------------

    def wake(self) -> None:
        """A job was queued: stop waiting."""
        self._wakeup.set()

    def expect_ack(self, job_id: int, acknowledged: asyncio.Future[None]) -> None:
        """The adapter is being told the job is queued; its first update waits for that."""
        self._acks[job_id] = acknowledged

    def cancel_running(self, job_id: int) -> bool:
        """Ask the engine to stop `job_id` if it is the running job; False if it is not."""
        current = self._current
        if current is None or current.job.id != job_id:
            return False
        if current.job.kind is not JobKind.QUESTION:
            raise FolioError(f"Job {job_id} is already changing the index and can't be stopped.")
        current.request_cancel("user")
        return True

    @property
    def running_job(self) -> Job | None:
        return self._current.job if self._current else None

    async def call_engine(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the engine thread (behind the job in progress, if any)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def run(self) -> None:
        """Deliver what a crash left undelivered, then serve jobs until `stop`."""
        await self._redeliver()
        while not self._stopping:
            self._wakeup.clear()
            try:
                job = await self._queue.claim(list(self._adapters))
            except Exception:
                logger.exception("could not take the next job; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), 1.0)
                continue
            if job is None:
                # Woken by `wake` at once; the poll only picks up jobs queued by another process.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._poll_s)
                continue
            running = _Running(job)
            self._current = running  # set before any await, so a cancel can find it
            try:
                if self._stopping:
                    await self._queue.requeue(job.id)
                    break
                await self._process(running)
            except Exception:
                logger.exception("job %s: the worker failed; it stays running till restart", job.id)
            finally:
                self._current = None

    async def stop(self, task: asyncio.Task[None], *, grace_s: float, cancel_wait_s: float) -> None:
        """Let the current job finish within `grace_s`, else stop it and put it back in line."""
        self._stopping = True
        self._wakeup.set()
        _, pending = await asyncio.wait({task}, timeout=grace_s)
        if pending and self._current is not None:
            logger.info("stopping: interrupting job %s, it will be answered after restart",
                        self._current.job.id)
            self._current.request_cancel("shutdown")
            _, pending = await asyncio.wait({task}, timeout=cancel_wait_s)
        if pending:
            stuck = self._current
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if stuck is not None:
                logger.warning("job %s did not stop in time; requeued", stuck.job.id)
                await self._queue.requeue(stuck.job.id)

    # ---- one job ----------------------------------------------------------------------------

    async def _process(self, running: _Running) -> None:
        job = running.job
        adapter = self._adapters[job.platform]
        # A platform may stream faster than the default (the terminal has no rate limit).
        interval = getattr(adapter, "edit_interval_s", None)
        relay = ProgressRelay(
            adapter,
            job,
            interval_s=self._edit_interval if interval is None else float(interval),
            acknowledged=self._acks.pop(job.id, None),
        )
        relay.start()
        try:
            status, outcome = await self._execute(running, relay)
        except _Requeue:
            relay.abort()
            await self._queue.requeue(job.id)
            logger.info("job %s requeued for after the restart", job.id)
            return
        except BaseException:
            relay.abort()
            raise
        await relay.finish()
        finished_at = time.time()
        record = build_record(job, status, outcome, finished_at=finished_at)
        if not await self._queue.complete(job.id, status, outcome, record):
            return  # someone else finished it (cannot happen with one worker, but never twice)
        if status is JobStatus.DONE and job.kind is JobKind.QUESTION and job.started_at:
            self.throughput.add(finished_at - job.started_at)
        await self.deliver(job, outcome)

    async def _execute(self, running: _Running, relay: ProgressRelay) -> tuple[JobStatus, Outcome]:
        job = running.job
        try:
            if running.cancel.is_set():
                raise GenerationCancelled()
            if job.attempts > MAX_ATTEMPTS:  # it took the process down every time: stop trying
                raise FolioError(
                    "Sorry, this request failed repeatedly and was dropped; try rephrasing it."
                )
            outcome = await self._run_engine(job, running, relay)
        except GenerationCancelled as exc:
            if running.reason == "shutdown":
                raise _Requeue() from exc
            return JobStatus.CANCELLED, ErrorOutcome(exc.message)
        except Exception as exc:
            return JobStatus.FAILED, ErrorOutcome(user_message(exc, context=f"job {job.id}"))
        if running.reason == "user":  # the engine finished anyway; the user asked to stop
            return JobStatus.CANCELLED, ErrorOutcome(GenerationCancelled().message)
        return JobStatus.DONE, outcome

    async def _run_engine(self, job: Job, running: _Running, relay: ProgressRelay) -> Outcome:
        loop = asyncio.get_running_loop()

        def to_loop(callback: Callable[..., None]) -> Callable[..., None]:
            """Wrap a loop-side callback so the engine thread can call it."""

            def call(*args: Any) -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed after a forced stop
                    loop.call_soon_threadsafe(callback, *args)

            return call

        engine = self._engine
        if job.kind is JobKind.QUESTION:
            turns = await self._history.recent_turns(job, self._history_turns)
            answer = await self.call_engine(
                engine.answer,
                job.text,
                collection=job.collection,
                history=turns,
                on_progress=to_loop(relay.on_answer_progress),
                cancelled=running.cancel.is_set,
            )
            return AnswerOutcome(answer)
        if job.kind is JobKind.INGEST:
            if job.attachment is None:
                raise FolioError("There is no file to index: attach a PDF.")
            report = await self.call_engine(
                engine.ingest_bytes,
                job.attachment.filename,
                job.attachment.data,
                collection=job.collection,
                on_progress=to_loop(relay.on_ingest_progress),
            )
            return IngestOutcome(report)
        if job.kind is JobKind.FORGET:
            info = await self.call_engine(engine.forget, job.text, collection=job.collection)
            return NoticeOutcome(f"Forgot {info.name} ({info.pages} pages, {info.chunks} chunks).")
        raise FolioError(f"I don't know how to do {job.kind!r} jobs.")

    # ---- delivery ---------------------------------------------------------------------------

    async def deliver(self, job: Job, outcome: Outcome) -> None:
        """Send the final reply, then record that it was sent (a failure is logged, not retried)."""
        adapter = self._adapters.get(job.platform)
        if adapter is None:
            return  # stays undelivered until that platform's adapter runs again
        try:
            await _send(adapter, job, outcome)
        except Exception:
            logger.exception("job %s: could not deliver the reply on %s", job.id, job.platform)
        await self._queue.mark_delivered(job.id)

    async def deliver_without_running(self, job: Job, outcome: Outcome) -> None:
        """Reply for a job that never ran (cancelled while queued), after its acknowledgement."""
        acknowledged = self._acks.pop(job.id, None)
        if acknowledged is not None:
            await asyncio.wait({acknowledged}, timeout=10.0)
        await self.deliver(job, outcome)

    async def _redeliver(self) -> None:
        undelivered = await self._queue.undelivered(list(self._adapters))
        for job, outcome in undelivered:
            logger.info("job %s: delivering the reply stored before the restart", job.id)
            await self.deliver(job, outcome)


def _send(adapter: Adapter, job: Job, outcome: Outcome) -> Awaitable[None]:
    match outcome:
        case AnswerOutcome(answer):
            return adapter.post_answer(job, answer)
        case IngestOutcome(report):
            return adapter.post_ingest_report(job, report)
        case NoticeOutcome(text):
            return adapter.post_notice(job, text)
        case ErrorOutcome(message):
            return adapter.post_error(job, message)
