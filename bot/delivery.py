"""Final replies: sent once the outcome is stored, without holding the job's slot.

The outcome is committed (with its history row) before it is sent, so a crash between the two
leaves an undelivered reply that this process, after a restart, or another process sharing the
queue sends later: at worst a reply is repeated, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping

from adapters.base import Adapter
from bot.jobs import AnswerOutcome, ErrorOutcome, IngestOutcome, Job, NoticeOutcome, Outcome
from bot.queue import JobQueue

logger = logging.getLogger(__name__)


class Delivery:
    """Sends final replies in the background and sweeps for stored ones never sent."""

    def __init__(
        self,
        queue: JobQueue,
        adapters: Mapping[str, Adapter],
        acks: dict[int, asyncio.Future[None]],
        *,
        redeliver_every_s: float = 60.0,
    ) -> None:
        self._queue = queue
        self._adapters = adapters
        self._acks = acks  # the worker's acknowledgements in flight, by job id
        # Final replies being sent, by job id: a platform outage can hold one for minutes
        # (adapters retry the final reply), which must not hold the job slot too.
        self._deliveries: dict[int, asyncio.Task[None]] = {}
        self._redeliver_every_s = redeliver_every_s

    def in_background(self, job: Job, outcome: Outcome) -> None:
        """Send the final reply without holding the job slot (the outcome is already stored)."""
        if job.id in self._deliveries:
            return
        task = asyncio.create_task(self.deliver(job, outcome), name=f"folio-deliver-{job.id}")
        self._deliveries[job.id] = task
        task.add_done_callback(lambda _: self._deliveries.pop(job.id, None))

    async def finish(self, grace_s: float) -> None:
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

    async def redeliver(self) -> None:
        undelivered = await self._queue.undelivered(list(self._adapters))
        for job, outcome in undelivered:
            if job.id in self._deliveries:
                continue  # being sent now
            logger.info("job %s: delivering a reply stored but never sent", job.id)
            self.in_background(job, outcome)

    async def redeliver_periodically(self) -> None:
        """Replies stored but not sent: a process that crashed between the two, including
        another process sharing the queue (Redis), which no restart here would notice."""
        while True:
            await asyncio.sleep(self._redeliver_every_s)
            try:
                await self.redeliver()
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
