"""The contract between the bot core and a chat platform.

An adapter turns platform events into `Job`s and calls `BotCore.submit` (after fetching any
attachment: platform file links expire). It never calls the RAG engine. The core then calls the
`Adapter` methods below for that job, in this order, from the event loop:

    acknowledge → post_status / stream_partial / post_ingest_progress (0..n, throttled)
                → exactly one of post_answer / post_ingest_report / post_notice / post_error

Calls for one job never overlap. `stream_partial` carries the whole answer so far (not a delta):
edit one message in place. The core owns the only throttle: it calls `post_status`,
`stream_partial` and `post_ingest_progress` at most once per the adapter's declared
`limits.edit_interval_s` (keeping a slot free so the final call never waits) and cuts partial text
to `limits.message_limit`; an adapter posts and edits what it is given, when it is given it.
The final call replaces that message with the finished reply (use `bot.render` to render and
split it under the platform's limit). A job recovered after a restart
may get its final call without an `acknowledge` in this process: find the place to answer from
`job.reply_to`. So once an adapter has posted a message for a job (the "Queued…" status it then
edits), it stores that message's reference in the job (`RemembersReplies.remember_reply`); a
process that later has no in-memory message for the job (after a restart, or another node of a
shared queue) edits that message instead of leaving it behind and posting a second one.
An exception raised by a method is logged by the core and does not stop the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bot.jobs import Attachment, Job
from rag.types import Answer, IngestReport


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """How a platform's messages may grow: the least time between two edits of one message
    (None: the core's `queue.edit_interval_s`) and the longest message (None: no limit)."""

    edit_interval_s: float | None = None
    message_limit: int | None = None


class Adapter(Protocol):
    """What the core calls to show a job's progress and result on one platform."""

    @property
    def platform(self) -> str:
        """The `Job.platform` this adapter answers ("discord", "slack", "console", ...)."""
        ...

    @property
    def limits(self) -> StreamLimits:
        """The platform's edit interval and message limit, which the core's throttle keeps to."""
        ...

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        """The job is durably queued: say so, with its position (1 = next) and rough ETA."""
        ...

    async def post_status(self, job: Job, text: str) -> None:
        """A short status line such as "searching the documents…" (see `bot.render`)."""
        ...

    async def stream_partial(self, job: Job, text: str) -> None:
        """The answer written so far (replace the previous partial text)."""
        ...

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        """Pages of `name` indexed so far."""
        ...

    async def post_answer(self, job: Job, answer: Answer) -> None:
        """The final answer, with citations (`bot.render.render_answer`)."""
        ...

    async def post_ingest_report(self, job: Job, report: IngestReport) -> None:
        """The result of an ingest: files, pages, chunks, duplicates, failures with reasons."""
        ...

    async def post_notice(self, job: Job, text: str) -> None:
        """A one-line final result, e.g. "Forgot guide.pdf (12 pages)."."""
        ...

    async def post_error(self, job: Job, message: str) -> None:
        """The job failed or was cancelled; `message` is ready to show (`bot.replies`)."""
        ...


class RemembersReplies(Protocol):
    """The core's port for storing where a job's replies went (`bot.core.BotCore` has it)."""

    async def remember_reply(self, job_id: int, updates: Mapping[str, str]) -> None:
        """Merge `updates` (string keys and values) into the stored job's `reply_to` (the SQLite
        queue writes it with its next write, within a second)."""
        ...


class FetchesAttachments(Protocol):
    """Adapters whose platform sends files by reference download them before submitting a job.

    `source` is whatever the platform gave (a URL and token, a file id); the bytes are stored with
    the job, so a restart does not depend on a link that has expired. Raise a `FolioError` with a
    reason the user can act on (too large, not a PDF, no access).
    """

    async def fetch_attachment(self, source: Mapping[str, Any]) -> Attachment: ...
