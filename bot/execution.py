"""Running one job: the engine on its thread, progress to the relay, the outcome stored with its
history row and handed to delivery.

Every ending is decided here: done, cancelled (by the user), failed (with a reply that says why),
back in line (shutdown, a generation server that is down, a first native crash of the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, Literal, TypeVar

from adapters.base import Adapter
from bot.delivery import Delivery
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
from bot.relay import ProgressRelay
from bot.replies import user_message
from bot.throughput import Throughput

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ATTEMPTS = 3  # claims of one job (the queue counts them) before it fails for good
MAX_CRASHES = 2  # attempts of one job that may end in a native crash: the first is retried
CancelReason = Literal["user", "shutdown"]


class Running:
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


class JobRunner:
    """Runs claimed jobs (the worker decides which and how many at once)."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        history: HistoryLog,
        engine: AnswerEngine,
        executor: Executor,
        adapters: Mapping[str, Adapter],
        throughput: Throughput,
        delivery: Delivery,
        acks: dict[int, asyncio.Future[None]],
        edit_interval_s: float,
        history_turns: int,
        retry_backoff_s: float,
        wake: Callable[[], None],
        stopping: Callable[[], bool],
    ) -> None:
        self._queue = queue
        self._history = history
        self._engine = engine
        self._executor = executor
        self._adapters = adapters
        self._throughput = throughput
        self._delivery = delivery
        self._acks = acks
        self._edit_interval = edit_interval_s
        self._history_turns = history_turns
        self._retry_backoff_s = retry_backoff_s
        self._wake = wake  # a job went back in line: the worker looks again
        self._stopping = stopping

    async def call_engine(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn` on an engine thread (behind the job in progress, with one thread)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def process(self, running: Running) -> None:
        job = running.job
        adapter = self._adapters[job.platform]
        limits = adapter.limits  # the platform's own pace; else the core's default
        relay = ProgressRelay(
            adapter,
            job,
            interval_s=(
                self._edit_interval if limits.edit_interval_s is None else limits.edit_interval_s
            ),
            message_limit=limits.message_limit,
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
            self._wake()
            return
        except BaseException:
            relay.abort()
            raise
        else:
            await relay.finish()
        await self.complete(job, status, outcome)

    async def _back_off(
        self, running: Running, adapter: Adapter, cause: ServiceUnavailable
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
        self._wake()
        return True

    @staticmethod
    def _cancelled() -> tuple[JobStatus, Outcome]:
        return JobStatus.CANCELLED, ErrorOutcome(GenerationCancelled().message)

    async def complete(self, job: Job, status: JobStatus, outcome: Outcome) -> None:
        """Store the outcome with its history row, then deliver it (once).

        (The next job is claimed after this write, not in it: the reply is sent meanwhile, and
        its "delivered" mark rides on that claim instead of waiting for a write of its own.)"""
        finished_at = time.time()
        record = build_record(job, status, outcome, finished_at=finished_at)
        if not await self._queue.complete(job.id, status, outcome, record):
            return  # someone else finished it (cannot happen with one worker, but never twice)
        # The shared history, if there is one, copies the row in the background: never a wait.
        await self._history.add(record)
        if status is JobStatus.DONE and job.kind is JobKind.QUESTION and job.started_at:
            self._throughput.add(finished_at - job.started_at)
        self._delivery.in_background(job, outcome)

    async def _execute(self, running: Running, relay: ProgressRelay) -> tuple[JobStatus, Outcome]:
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
                if running.reason == "shutdown" or self._stopping():
                    raise _Requeue() from exc  # tried again after the restart
                raise _Retry(exc) from exc
            logger.warning("job %s failed after %d attempts: %s", job.id, job.attempts, exc)
            return JobStatus.FAILED, ErrorOutcome(exc.message)
        except Exception as exc:
            return JobStatus.FAILED, ErrorOutcome(user_message(exc, context=f"job {job.id}"))
        if running.reason == "user":  # the engine finished anyway; the user asked to stop
            return JobStatus.CANCELLED, ErrorOutcome(GenerationCancelled().message)
        return JobStatus.DONE, outcome

    async def _run_engine(self, job: Job, running: Running, relay: ProgressRelay) -> Outcome:
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
