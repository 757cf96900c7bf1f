"""The worker: takes the fairly-next jobs, runs the engine on its threads, streams progress.

The engine is slow and synchronous, so it runs on an executor of dedicated threads; the event
loop only awaits it. With the embedded model that is one thread (only it ever touches the model)
and one job at a time. With a generation server the worker is a small pool: up to
`concurrency` questions run at once, while ingest and forget jobs, which change the index, always
run alone (the worker drains the questions in progress first). A job whose generation server is
unreachable goes back in the queue after a short backoff, up to MAX_ATTEMPTS claims, and then
fails with a reply that says so. Progress crosses back with
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
from bot.errors import FolioError, GenerationCancelled, GeneratorCrashed, ServiceUnavailable
from bot.history import HistoryLog, build_record
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
FINAL_EDIT_WINDOW = 5  # the final edit may come early if fewer edits than this in as many intervals
MAX_ATTEMPTS = 3  # claims of one job (the queue counts them) before it fails for good
MAX_CRASHES = 2  # attempts of one job that may end in a native crash: the first is retried
CancelReason = Literal["user", "shutdown"]


class Throughput:
    """Moving average of recent job run times, for "answered in ~40s" at acceptance."""

    def __init__(self, *, default_s: float = 20.0, window: int = 20, parallel: int = 1) -> None:
        self._default = default_s
        self._recent: deque[float] = deque(maxlen=window)
        self._parallel = max(1, parallel)

    def add(self, seconds: float) -> None:
        if seconds >= 0:
            self._recent.append(seconds)

    @property
    def average_s(self) -> float:
        """The mean of the recent run times; the default before anything was measured."""
        return sum(self._recent) / len(self._recent) if self._recent else self._default

    def eta(self, jobs_until_done: int) -> float:
        """Seconds until `jobs_until_done` more jobs (this one included) have run, `parallel`
        at a time."""
        return self.average_s * max(1, -(-jobs_until_done // self._parallel))


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
        self._recent_edits: deque[float] = deque(maxlen=FINAL_EDIT_WINDOW)
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
            now = time.monotonic()
            self._next_edit_at = now + self._interval
            self._recent_edits.append(now)

    async def finish(self) -> None:
        """Stop streaming, then wait until the final reply may be sent without breaking the rate.

        Partial edits keep to one per interval. The final one is the message's last, so it may
        come sooner, as long as the message got fewer than `FINAL_EDIT_WINDOW` edits in that
        many intervals (Discord's own limit is 5 per 5 s): the answer is not held back for
        up to an interval after the model is done.
        """
        self._closing.set()
        self._changed.set()
        if self._task is not None:
            await self._task
        await self.wait_acknowledged()
        edits = self._recent_edits
        if len(edits) == FINAL_EDIT_WINDOW:
            delay = edits[0] + FINAL_EDIT_WINDOW * self._interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()


class _Running:
    """A job in the engine now, and the flag its `cancelled` callback reads (from that thread)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.cancel = threading.Event()
        self.cancelled_on_loop = asyncio.Event()  # the same flag, for waits on the event loop
        self.reason: CancelReason | None = None

    def request_cancel(self, reason: CancelReason) -> None:
        """Called on the event loop (cancel commands, shutdown)."""
        if self.reason is None:
            self.reason = reason
        self.cancel.set()
        self.cancelled_on_loop.set()


class _Requeue(Exception):
    """The engine stopped because we are shutting down: the job goes back to pending."""


class _CrashRetry(Exception):
    """The model's process died on this job for the first time: one more try, in a fresh one."""

    def __init__(self, cause: GeneratorCrashed) -> None:
        super().__init__(cause.message)
        self.cause = cause


class _Retry(Exception):
    """The generation server failed transiently: the job goes back to pending after a backoff."""

    def __init__(self, cause: ServiceUnavailable) -> None:
        super().__init__(cause.message)
        self.cause = cause


class Worker:
    """Consumes the queue, up to `concurrency` questions at a time (ingest and forget alone),
    and routes each job's output to its platform."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        history: HistoryLog,
        engine: AnswerEngine,
        executor: Executor,
        adapters: Mapping[str, Adapter],
        throughput: Throughput,
        edit_interval_s: float,
        history_turns: int = 4,
        poll_s: float = 30.0,
        concurrency: int = 1,
        retry_backoff_s: float = 2.0,
        redeliver_every_s: float = 60.0,
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
        self._concurrency = max(1, concurrency)
        self._retry_backoff_s = retry_backoff_s
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._running: dict[int, _Running] = {}  # claimed jobs, oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._exclusive = False  # an ingest or forget job is claimed: nothing else may start
        self._acks: dict[int, asyncio.Future[None]] = {}
        # Final replies being sent, by job id: a platform outage can hold one for minutes
        # (adapters retry the final reply), which must not hold the job slot too.
        self._deliveries: dict[int, asyncio.Task[None]] = {}
        self._redeliver_every_s = redeliver_every_s

    # ---- control (from the core) ------------------------------------------------------------

    def wake(self) -> None:
        """A job was queued: stop waiting."""
        self._wakeup.set()

    def expect_ack(self, job_id: int, acknowledged: asyncio.Future[None]) -> None:
        """The adapter is being told the job is queued; its first update waits for that."""
        self._acks[job_id] = acknowledged
        # Dropped once done: a job answered by another process never comes to pop it.
        acknowledged.add_done_callback(lambda _: self._acks.pop(job_id, None))

    def cancel_running(self, job_id: int) -> bool:
        """Ask the engine to stop `job_id` if it is a running job; False if it is not."""
        current = self._running.get(job_id)
        if current is None:
            return False
        if current.job.kind is not JobKind.QUESTION:
            raise FolioError(f"Job {job_id} is already changing the index and can't be stopped.")
        current.request_cancel("user")
        return True

    @property
    def running_job(self) -> Job | None:
        """The oldest running job (the only one, with concurrency 1)."""
        return next((r.job for r in self._running.values()), None)

    @property
    def running_jobs(self) -> list[Job]:
        return [r.job for r in self._running.values()]

    async def call_engine(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn` on an engine thread (behind the job in progress, with one thread)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def run(self) -> None:
        """Deliver what a crash left undelivered, then serve jobs until `stop`; returns once the
        jobs in progress have finished (or been requeued)."""
        await self._redeliver()
        sweeper = asyncio.create_task(self._redeliver_periodically(), name="folio-redeliver")
        try:
            while not self._stopping:
                self._wakeup.clear()
                if self._exclusive or len(self._running) >= self._concurrency:
                    await self._wait_for_wakeup(self._poll_s)  # a job's end wakes us
                    continue
                try:
                    job = await self._queue.claim(list(self._adapters))
                except Exception:
                    logger.exception("could not take the next job; retrying")
                    await self._wait_for_wakeup(1.0)
                    continue
                if job is None:
                    # Woken by `wake` at once; the poll only picks up jobs queued by another
                    # process.
                    await self._wait_for_wakeup(self._poll_s)
                    continue
                running = _Running(job)
                self._running[job.id] = running  # before any await, so a cancel can find it
                if job.kind is not JobKind.QUESTION:
                    self._exclusive = True
                    await self._drain_others(job.id)  # it changes the index: it runs alone
                if self._stopping:
                    self._running.pop(job.id, None)
                    self._exclusive = False
                    await self._queue.requeue(job.id)
                    break
                task = asyncio.create_task(self._run_job(running), name=f"folio-job-{job.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            sweeper.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _wait_for_wakeup(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout_s)

    async def _drain_others(self, job_id: int) -> None:
        """Wait until every job but `job_id` has finished (they end normally, or on `stop`)."""
        while any(other != job_id for other in self._running):
            self._wakeup.clear()
            await self._wait_for_wakeup(self._poll_s)

    async def _run_job(self, running: _Running) -> None:
        job = running.job
        try:
            await self._process(running)
        except Exception as exc:
            # A bug in the worker itself: the user still gets an answer and the job still ends,
            # with its history row, instead of staying "running" with nobody told.
            message = user_message(exc, context=f"worker, job {job.id}")
            try:
                await self._complete(job, JobStatus.FAILED, ErrorOutcome(message))
            except Exception:
                logger.exception("job %s: could not record its failure either", job.id)
        finally:
            self._running.pop(job.id, None)
            if job.kind is not JobKind.QUESTION:
                self._exclusive = False
            self._wakeup.set()  # a slot is free

    async def stop(self, task: asyncio.Task[None], *, grace_s: float, cancel_wait_s: float) -> None:
        """Let the jobs in progress finish within `grace_s`, else stop them and put them back in
        line."""
        self._stopping = True
        self._wakeup.set()
        _, pending = await asyncio.wait({task}, timeout=grace_s)
        if pending and self._running:
            ids = sorted(self._running)
            logger.info("stopping: interrupting job(s) %s, answered after restart", ids)
            for running in list(self._running.values()):
                running.request_cancel("shutdown")
            _, pending = await asyncio.wait({task}, timeout=cancel_wait_s)
        if pending:
            stuck = [r.job.id for r in self._running.values()]
            task.cancel()
            for job_task in list(self._tasks):
                job_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for job_id in stuck:
                logger.warning("job %s did not stop in time; requeued", job_id)
                await self._queue.requeue(job_id)
        await self._finish_deliveries(grace_s)

    async def _finish_deliveries(self, grace_s: float) -> None:
        """Give final replies in flight `grace_s` to land; the rest stay undelivered in the queue
        and are sent after the restart (at worst a reply is repeated, never lost)."""
        if not self._deliveries:
            return
        _, pending = await asyncio.wait(set(self._deliveries.values()), timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("%d repl(ies) not sent before stopping; sent after restart",
                           len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

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
        except _Retry as retry:
            relay.abort()
            await relay.wait_acknowledged()
            if await self._back_off(running, adapter, retry.cause):
                return
            status, outcome = self._cancelled()
        except _CrashRetry as crash:
            relay.abort()
            await relay.wait_acknowledged()
            logger.warning("job %s: %s; trying once more in a fresh model process",
                           job.id, crash.cause.reason)
            try:
                await adapter.post_status(
                    job, "The model crashed on this question; trying once more."
                )
            except Exception:
                logger.exception("job %s: post_status failed on %s", job.id, job.platform)
            await self._queue.requeue(job.id, crashed=True)
            self._wakeup.set()
            return
        except BaseException:
            relay.abort()
            raise
        else:
            await relay.finish()
        await self._complete(job, status, outcome)

    async def _back_off(
        self, running: _Running, adapter: Adapter, cause: ServiceUnavailable
    ) -> bool:
        """Wait a little, then put the job back in line. False if it was cancelled meanwhile."""
        job = running.job
        delay = self._retry_backoff_s * job.attempts
        logger.warning(
            "job %s: %s; retrying in %.1fs (attempt %d of %d)",
            job.id, cause.reason, delay, job.attempts, MAX_ATTEMPTS,
        )
        try:
            await adapter.post_status(
                job, f"{cause.waiting}; trying again in {delay:.0f}s."
            )
        except Exception:
            logger.exception("job %s: post_status failed on %s", job.id, job.platform)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running.cancelled_on_loop.wait(), delay)
        if running.reason == "user":
            return False
        await self._queue.requeue(job.id)
        self._wakeup.set()
        return True

    @staticmethod
    def _cancelled() -> tuple[JobStatus, Outcome]:
        return JobStatus.CANCELLED, ErrorOutcome(GenerationCancelled().message)

    async def _complete(self, job: Job, status: JobStatus, outcome: Outcome) -> None:
        """Store the outcome with its history row, then deliver it (once)."""
        finished_at = time.time()
        record = build_record(job, status, outcome, finished_at=finished_at)
        if not await self._queue.complete(job.id, status, outcome, record):
            return  # someone else finished it (cannot happen with one worker, but never twice)
        try:
            await self._history.add(record)  # the shared history, if there is one
        except Exception as exc:  # the answer is stored already: it is still delivered
            logger.warning("job %s: not added to the shared history (%s)", job.id, exc)
        if status is JobStatus.DONE and job.kind is JobKind.QUESTION and job.started_at:
            self.throughput.add(finished_at - job.started_at)
        self._deliver_in_background(job, outcome)

    def _deliver_in_background(self, job: Job, outcome: Outcome) -> None:
        """Send the final reply without holding the job slot (the outcome is already stored)."""
        if job.id in self._deliveries:
            return
        task = asyncio.create_task(self.deliver(job, outcome), name=f"folio-deliver-{job.id}")
        self._deliveries[job.id] = task
        task.add_done_callback(lambda _: self._deliveries.pop(job.id, None))

    async def _execute(self, running: _Running, relay: ProgressRelay) -> tuple[JobStatus, Outcome]:
        job = running.job
        try:
            if running.cancel.is_set():
                raise GenerationCancelled()
            if job.crashes >= MAX_CRASHES:  # the bot died with it, twice: never a crash loop
                raise GeneratorCrashed(f"Folio's process died {job.crashes} times answering it")
            if job.attempts > MAX_ATTEMPTS:  # it took the process down every time: stop trying
                raise FolioError(
                    "Sorry, this request failed repeatedly and was dropped; try rephrasing it."
                )
            outcome = await self._run_engine(job, running, relay)
        except GenerationCancelled as exc:
            if running.reason == "shutdown":
                raise _Requeue() from exc
            return JobStatus.CANCELLED, ErrorOutcome(exc.message)
        except GeneratorCrashed as exc:
            if running.reason == "user":
                return self._cancelled()
            if job.crashes + 1 < MAX_CRASHES:
                raise _CrashRetry(exc) from exc
            logger.error("job %s: %s (crash %d); giving up", job.id, exc.reason, job.crashes + 1)
            return JobStatus.FAILED, ErrorOutcome(exc.message)
        except ServiceUnavailable as exc:  # the generation server or the database
            if running.reason == "user":
                return self._cancelled()
            if job.attempts < MAX_ATTEMPTS:
                if running.reason == "shutdown" or self._stopping:
                    raise _Requeue() from exc  # tried again after the restart
                raise _Retry(exc) from exc
            logger.warning("job %s failed after %d attempts: %s", job.id, job.attempts, exc)
            return JobStatus.FAILED, ErrorOutcome(exc.message)
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
            if job.id in self._deliveries:
                continue  # being sent now
            logger.info("job %s: delivering a reply stored but never sent", job.id)
            self._deliver_in_background(job, outcome)

    async def _redeliver_periodically(self) -> None:
        """Replies stored but not sent: a process that crashed between the two, including
        another process sharing the queue (Redis), which no restart here would notice."""
        while True:
            await asyncio.sleep(self._redeliver_every_s)
            try:
                await self._redeliver()
            except Exception:
                logger.exception("could not look for undelivered replies; trying again later")


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
