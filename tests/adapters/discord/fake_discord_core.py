"""A hand-written BotCore for the Discord tests: it queues nothing and runs each job by a script.

Like the real core, after `submit` it calls the adapter's `acknowledge`, then the steps of the
job's script, then exactly one final call. Tests `enqueue` scripts; a job without one gets a
default answer. Exceptions raised by the adapter are kept in `errors` for the tests to check.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from adapters.base import Adapter
from bot.errors import DuplicateJobError, NotFoundError
from bot.history import HistoryEntry
from bot.jobs import Accepted, Job, JobKind
from rag.types import Answer, Citation, DocumentInfo, FileOutcome, IngestReport

Step = Callable[[Adapter, Job], Awaitable[None]]


def answer_of(text: str, *cited: tuple[str, int]) -> Answer:
    return Answer(
        text=text,
        citations=[Citation(doc, page, "quote") for doc, page in cited],
        retrieved=[],
        abstained=False,
    )


def status(text: str) -> Step:
    async def step(adapter: Adapter, job: Job) -> None:
        await adapter.post_status(job, text)

    return step


def partial(text: str) -> Step:
    async def step(adapter: Adapter, job: Job) -> None:
        await adapter.stream_partial(job, text)

    return step


def final_answer(answer: Answer) -> Step:
    async def step(adapter: Adapter, job: Job) -> None:
        await adapter.post_answer(job, answer)

    return step


def wait_for(event: asyncio.Event) -> Step:
    async def step(adapter: Adapter, job: Job) -> None:
        await event.wait()

    return step


def call(fn: Callable[[], None]) -> Step:
    async def step(adapter: Adapter, job: Job) -> None:
        fn()

    return step


@dataclass
class FakeCore:
    adapter: Adapter | None = None
    jobs: list[Job] = field(default_factory=list)
    scripts: deque[list[Step]] = field(default_factory=deque)
    errors: list[BaseException] = field(default_factory=list)
    documents_by_collection: dict[str, list[DocumentInfo]] = field(default_factory=dict)
    history_entries: list[HistoryEntry] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)
    remembered: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # remember_reply
    deleted_messages: list[tuple[str, str]] = field(default_factory=list)
    position: int = 1
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _finished: asyncio.Condition = field(default_factory=asyncio.Condition)
    finished: list[Job] = field(default_factory=list)

    def enqueue(self, *steps: Step) -> None:
        """The script of the next submitted job (its final call included)."""
        self.scripts.append(list(steps))

    async def submit(self, job: Job) -> Accepted:
        if any(j.idempotency_key == job.idempotency_key for j in self.jobs):
            raise DuplicateJobError("That request is already being answered.")
        job = replace(job, id=next(self._ids))
        self.jobs.append(job)
        accepted = Accepted(job_id=job.id, position=self.position, eta_s=12.0, job=job)
        self._tasks.append(asyncio.create_task(self._run(job, accepted)))
        return accepted

    async def _run(self, job: Job, accepted: Accepted) -> None:
        assert self.adapter is not None
        steps = self.scripts.popleft() if self.scripts else self._default(job)
        try:
            await self.adapter.acknowledge(job, accepted.position, accepted.eta_s)
            for step in steps:
                await step(self.adapter, job)
        except BaseException as exc:  # the real core logs it; tests look at it
            self.errors.append(exc)
        async with self._finished:
            self.finished.append(job)
            self._finished.notify_all()

    @staticmethod
    def _default(job: Job) -> list[Step]:
        if job.kind is JobKind.INGEST:
            assert job.attachment is not None
            report = IngestReport(
                [FileOutcome(job.attachment.filename, "added", pages=3, chunks=7)], seconds=0.5
            )

            async def ingest(adapter: Adapter, job: Job) -> None:
                await adapter.post_ingest_progress(job, report.outcomes[0].name, 3, 3)
                await adapter.post_ingest_report(job, report)

            return [ingest]
        if job.kind is JobKind.FORGET:

            async def notice(adapter: Adapter, job: Job) -> None:
                await adapter.post_notice(job, f"Forgot {job.text}.")

            return [notice]
        return [final_answer(answer_of(f"Echo: {job.text}", ("guide.pdf", 1)))]

    async def wait_finished(self, count: int = 1, within: float = 5.0) -> list[Job]:
        async def _wait() -> list[Job]:
            async with self._finished:
                await self._finished.wait_for(lambda: len(self.finished) >= count)
                return list(self.finished)

        return await asyncio.wait_for(_wait(), within)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- the rest of CorePort -------------------------------------------------------------------

    async def cancel(self, platform: str, user: str, job_id: int | None = None) -> Job:
        self.cancelled.append((platform, user))
        for job in reversed(self.jobs):
            if job.requester == (platform, user):
                return job
        raise NotFoundError("You have nothing waiting or being answered.")

    async def cancel_for_deleted_message(self, platform: str, message_id: str) -> Job | None:
        self.deleted_messages.append((platform, message_id))
        return next((j for j in self.jobs if j.message_id == message_id), None)

    async def history(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]:
        return self.history_entries[:limit]

    async def remember_reply(self, job_id: int, updates: Mapping[str, str]) -> None:
        """Merge into the stored job's `reply_to`, as the real queue does."""
        self.remembered.append((job_id, dict(updates)))
        self.jobs = [
            replace(j, reply_to={**j.reply_to, **updates}) if j.id == job_id else j
            for j in self.jobs
        ]

    async def documents(self, collection: str) -> list[DocumentInfo]:
        return self.documents_by_collection.get(collection, [])
