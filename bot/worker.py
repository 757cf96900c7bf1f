"""The worker: the scheduler that takes the fairly-next jobs and runs them on the engine threads.

The engine is slow and synchronous, so it runs on an executor of dedicated threads; the event
loop only awaits it. With the embedded model that is one thread (only it ever touches the model)
and one job at a time. With a generation server the worker is a small pool: up to
`concurrency` questions run at once, while ingest and forget jobs, which change the index, always
run alone (the worker drains the questions in progress first).

One job's life, in order: claimed here (or, when the worker is idle and waiting, by its own put:
`reserve` and `take`, one write instead of two) → run by bot.execution (progress streamed by
bot.relay) → its outcome stored with its history row → its reply sent by bot.delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar

from adapters.base import Adapter
from bot.delivery import Delivery
from bot.errors import FolioError
from bot.execution import MAX_ATTEMPTS, JobRunner, Running
from bot.history import HistoryLog
from bot.jobs import ErrorOutcome, Job, JobKind, JobStatus, Outcome
from bot.ports import AnswerEngine
from bot.queue import JobQueue
from bot.relay import FINAL_EDIT_WINDOW
from bot.replies import user_message
from bot.throughput import Throughput

__all__ = ["FINAL_EDIT_WINDOW", "MAX_ATTEMPTS", "Throughput", "Worker"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
        self._adapters = adapters
        self.throughput = throughput
        self._poll_s = poll_s
        self._concurrency = max(1, concurrency)
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._running: dict[int, Running] = {}  # claimed jobs, oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._exclusive = False  # an ingest or forget job is claimed: nothing else may start
        self._acks: dict[int, asyncio.Future[None]] = {}
        # An idle worker's slot, offered to a job being submitted so that its put claims it in
        # the same write (`reserve`, then `take`); the loop claims nothing meanwhile.
        self._parked = False  # the loop found nothing to claim and waits
        self._reserved = False
        self._unreserved = asyncio.Event()
        self._unreserved.set()
        self._handed: deque[Running] = deque()  # claimed with their put, to be started
        self._delivery = Delivery(
            queue, adapters, self._acks, redeliver_every_s=redeliver_every_s
        )
        self._runner = JobRunner(
            queue=queue,
            history=history,
            engine=engine,
            executor=executor,
            adapters=adapters,
            throughput=throughput,
            delivery=self._delivery,
            acks=self._acks,
            edit_interval_s=edit_interval_s,
            history_turns=history_turns,
            retry_backoff_s=retry_backoff_s,
            wake=self._wakeup.set,
            stopping=lambda: self._stopping,
        )

    # ---- control (from the core) ------------------------------------------------------------

    def wake(self) -> None:
        """A job was queued: stop waiting."""
        self._wakeup.set()

    def reserve(self) -> list[str]:
        """If nothing runs and the loop is waiting for work, hold the slot for the job being
        submitted and return the platforms its put may claim it for; else []."""
        if self._stopping or not self._parked or self._reserved or self._running:
            return []
        self._reserved = True
        self._unreserved.clear()
        return list(self._adapters)

    def take(self, claimed: Job | None) -> None:
        """End a reservation: start `claimed` (its put claimed it), or let the loop look."""
        self._reserved = False
        self._unreserved.set()
        if claimed is not None:
            running = Running(claimed)
            self._running[claimed.id] = running  # at once, so a cancel can find it
            if claimed.kind is not JobKind.QUESTION:
                self._exclusive = True  # nothing else runs: nothing to drain
            self._handed.append(running)
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
    def running_jobs(self) -> list[Job]:
        return [r.job for r in self._running.values()]

    async def call_engine(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn` on an engine thread (behind the job in progress, with one thread)."""
        return await self._runner.call_engine(fn, *args, **kwargs)

    async def deliver_without_running(self, job: Job, outcome: Outcome) -> None:
        """Reply for a job that never ran (cancelled while queued), after its acknowledgement."""
        await self._delivery.deliver_without_running(job, outcome)

    async def run(self) -> None:
        """Deliver what a crash left undelivered, then serve jobs until `stop`; returns once the
        jobs in progress have finished (or been requeued)."""
        await self._delivery.redeliver()
        sweeper = asyncio.create_task(
            self._delivery.redeliver_periodically(), name="folio-redeliver"
        )
        try:
            while not self._stopping:
                self._wakeup.clear()
                if self._handed:  # claimed with its put (see `take`)
                    running = self._handed.popleft()
                    job = running.job
                else:
                    if (
                        self._exclusive or self._reserved
                        or len(self._running) >= self._concurrency
                    ):
                        await self._wait_for_wakeup(self._poll_s)  # a job's end wakes us
                        continue
                    try:
                        claimed = await self._queue.claim(list(self._adapters))
                    except Exception:
                        logger.exception("could not take the next job; retrying")
                        await self._wait_for_wakeup(1.0)
                        continue
                    if claimed is None:
                        # Woken by `wake` at once; the poll only picks up jobs queued by
                        # another process.
                        self._parked = True
                        try:
                            await self._wait_for_wakeup(self._poll_s)
                        finally:
                            self._parked = False
                        continue
                    job = claimed
                    running = Running(job)
                    self._running[job.id] = running  # before any await: a cancel finds it
                    if job.kind is not JobKind.QUESTION:
                        self._exclusive = True
                        await self._drain_others(job.id)  # it changes the index: it runs alone
                if self._stopping:
                    self._handed.appendleft(running)  # back in line, below
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

    async def _run_job(self, running: Running) -> None:
        job = running.job
        try:
            await self._runner.process(running)
        except Exception as exc:
            # A bug in the worker itself: the user still gets an answer and the job still ends,
            # with its history row, instead of staying "running" with nobody told.
            message = user_message(exc, context=f"worker, job {job.id}")
            try:
                await self._runner.complete(job, JobStatus.FAILED, ErrorOutcome(message))
            except Exception:
                logger.exception("job %s: could not record its failure either", job.id)
        finally:
            self._running.pop(job.id, None)
            self._exclusive = self._holds_index()
            self._wakeup.set()  # a slot is free

    def _holds_index(self) -> bool:
        """An ingest or forget job is among those claimed: nothing else may start."""
        return any(r.job.kind is not JobKind.QUESTION for r in self._running.values())

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
        # A put in flight may still claim its job (then `take`); those never ran: back in line.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._unreserved.wait(), 10.0)
        while self._handed:
            job = self._handed.popleft().job
            self._running.pop(job.id, None)
            self._exclusive = self._holds_index()
            await self._queue.requeue(job.id)
        await self._delivery.finish(grace_s)
