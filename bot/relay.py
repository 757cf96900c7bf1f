"""Streaming one job's progress to its platform message, at most one edit per interval.

The engine thread reports progress through `loop.call_soon_threadsafe`; the relay keeps only the
newest state and a pump task sends it when the interval allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from adapters.base import Adapter
from bot.jobs import Job
from bot.render import STATUS_SEARCHING, STATUS_WRITING
from rag.types import AnswerProgress

logger = logging.getLogger(__name__)

FINAL_EDIT_WINDOW = 5  # the final edit may come early if fewer edits than this in as many intervals


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
