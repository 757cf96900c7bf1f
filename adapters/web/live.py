"""What the core says about each web job, fanned out to whoever is watching it.

A request that asks (or uploads) watches its job: it gets the events so far, then each new one,
until the final one. The core's calls land here whether anyone is watching or not (a browser tab
may have closed; the answer is in the history either way). Finished jobs are forgotten after a
while, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

FINAL_EVENTS = frozenset({"answer", "ingest", "notice", "error"})


@dataclass(frozen=True, slots=True)
class Event:
    name: str  # queued, status, partial, progress, answer, ingest, notice, error
    data: dict[str, Any]


@dataclass
class JobWatch:
    """The events of one job: a replay log (the latest partial only) and live subscribers."""

    events: list[Event] = field(default_factory=list)
    subscribers: set[asyncio.Queue[Event]] = field(default_factory=set)
    final: Event | None = None
    finished_at: float = 0.0

    def publish(self, event: Event) -> None:
        if self.final is not None:
            return
        if self.events and self.events[-1].name == event.name and event.name in (
            "partial", "status", "progress"
        ):
            self.events[-1] = event  # a newer partial text replaces the older one
        else:
            self.events.append(event)
        if event.name in FINAL_EVENTS:
            self.final = event
            self.finished_at = time.monotonic()
        for queue in self.subscribers:
            queue.put_nowait(event)


class LiveJobs:
    """Job id → `JobWatch`, bounded: finished watches go after `keep_s`, the oldest beyond
    `max_jobs`."""

    def __init__(self, *, keep_s: float = 300.0, max_jobs: int = 1000) -> None:
        self._watches: OrderedDict[int, JobWatch] = OrderedDict()
        self._keep_s = keep_s
        self._max_jobs = max_jobs

    def publish(self, job_id: int, name: str, data: dict[str, Any]) -> None:
        self._get(job_id).publish(Event(name, data))
        self._prune()

    def _get(self, job_id: int) -> JobWatch:
        watch = self._watches.get(job_id)
        if watch is None:
            watch = self._watches[job_id] = JobWatch()
        return watch

    async def follow(self, job_id: int, timeout_s: float) -> AsyncIterator[Event]:
        """Yield the job's events (replayed, then live) until the final one, or until
        `timeout_s` passes with nothing new (then an "error" event says so)."""
        watch = self._get(job_id)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for event in watch.events:
            queue.put_nowait(event)
        watch.subscribers.add(queue)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout_s)
                except TimeoutError:
                    yield Event("error", {"message": "No answer yet; it will be in your history."})
                    return
                yield event
                if event.name in FINAL_EVENTS:
                    return
        finally:
            watch.subscribers.discard(queue)

    async def final(self, job_id: int, timeout_s: float) -> Event:
        """The job's final event (waits for it)."""
        last = Event("error", {"message": "No answer yet; it will be in your history."})
        async for event in self.follow(job_id, timeout_s):
            last = event
        return last

    def _prune(self) -> None:
        now = time.monotonic()
        for job_id, watch in list(self._watches.items()):
            stale = watch.final is not None and now - watch.finished_at > self._keep_s
            if (stale or len(self._watches) > self._max_jobs) and not watch.subscribers:
                del self._watches[job_id]
            elif not stale and len(self._watches) <= self._max_jobs:
                break
