"""A hand-written stand-in for the bot core: it accepts jobs like the real queue does (idempotency
keys, positions) and lets a test play the worker by calling the adapter's callbacks itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from adapters.base import Adapter
from adapters.slack import SlackAdapter
from bot.errors import DuplicateJobError, NotFoundError, PermissionDeniedError, QueueFullError
from bot.history import HistoryEntry
from bot.jobs import Accepted, Job, JobStatus
from rag.types import DocumentInfo

StartAdapter = Callable[..., Awaitable[SlackAdapter]]
"""The `start_adapter` fixture: start a SlackAdapter against the fake (settings as keywords)."""


@dataclass
class FakeCore:
    jobs: list[Job] = field(default_factory=list)
    documents_by_collection: dict[str, list[DocumentInfo]] = field(default_factory=dict)
    past: list[HistoryEntry] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)
    remembered: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # remember_reply
    full: bool = False
    broken: Exception | None = None  # raised by submit and documents, like an outage would
    adapter: Adapter | None = None  # told `acknowledge` after each submit, as the core does

    def __post_init__(self) -> None:
        self._submitted: asyncio.Queue[Job] = asyncio.Queue()

    def register(self, adapter: Adapter) -> None:
        self.adapter = adapter

    async def submit(self, job: Job) -> Accepted:
        if any(
            j.platform == job.platform and j.idempotency_key == job.idempotency_key
            for j in self.jobs
        ):
            raise DuplicateJobError("Already received that message.")
        if self.broken is not None:
            raise self.broken
        if self.full:
            raise QueueFullError("The queue is full; please try again in a few minutes.")
        stored = replace(job, id=len(self.jobs) + 1, status=JobStatus.PENDING, created_at=1.0)
        self.jobs.append(stored)
        self._submitted.put_nowait(stored)
        pending = sum(1 for j in self.jobs if j.status is JobStatus.PENDING)
        if self.adapter is not None:
            await self.adapter.acknowledge(stored, pending, 4.0 * pending)
        return Accepted(job_id=stored.id, position=pending, eta_s=4.0 * pending, job=stored)

    async def next_job(self, within: float = 5.0) -> Job:
        """The next job an adapter submitted (the test then plays the worker)."""
        return await asyncio.wait_for(self._submitted.get(), within)

    def pending(self) -> int:
        return self._submitted.qsize()

    async def cancel(self, platform: str, user: str, job_id: int | None = None) -> Job:
        mine = [j for j in self.jobs if j.requester == (platform, user)]
        if job_id is not None:
            mine = [j for j in self.jobs if j.id == job_id]
            if mine and mine[0].requester != (platform, user):
                raise PermissionDeniedError(f"Job {job_id} is not yours to cancel.")
        if not mine:
            raise NotFoundError("You have nothing queued or running.")
        self.cancelled.append((platform, user))
        return mine[-1]

    async def history(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]:
        return self.past[:limit]

    async def remember_reply(self, job_id: int, updates: Mapping[str, str]) -> None:
        """Merge into the stored job's `reply_to`, as the real queue does."""
        self.remembered.append((job_id, dict(updates)))
        self.jobs = [
            replace(j, reply_to={**j.reply_to, **updates}) if j.id == job_id else j
            for j in self.jobs
        ]

    async def documents(self, collection: str) -> list[DocumentInfo]:
        if self.broken is not None:
            raise self.broken
        return self.documents_by_collection.get(collection, [])
