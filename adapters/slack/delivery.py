"""Where a job's replies go in Slack, and how they get there.

A job carries, in `reply_to`, everything needed to answer it (so a job recovered after a restart
can still be answered): the thread, the message being streamed into (posted before the job was
queued, as `/ask` does, or the status message posted when it was; stored with the job as soon as
it exists), whether that message starts with the question, and the command's response_url. This
module turns the core's callbacks for a job into posts and throttled edits; a process that did not
post the job's message itself (after a restart, or another node) edits the stored one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import RemembersReplies, StreamLimits
from adapters.retry import retry_transient
from adapters.slack import format as fmt
from adapters.slack.mrkdwn import escape, split_message
from adapters.slack.outbox import RESPONSE_URL_MAX_USES, ResponseUrl, SlackOutbox
from adapters.slack.stream import StreamingMessage
from bot.jobs import Job, JobKind
from rag.types import Answer, IngestReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """The Slack side of `Job.reply_to`."""

    thread_ts: str = ""
    message_ts: str = ""  # a message already posted for this job, to edit
    message_channel: str = ""  # its channel, as Slack named it ("" = the job's channel)
    header: bool = False  # the message shows "<@user> asked: …" above the answer
    response_url: str = ""
    response_url_at: float = 0.0
    via_response_url: bool = False  # the app cannot post in the channel: answer via response_url

    def to_dict(self) -> dict[str, Any]:
        return {
            "thread_ts": self.thread_ts,
            "message_ts": self.message_ts,
            "message_channel": self.message_channel,
            "header": self.header,
            "response_url": self.response_url,
            "response_url_at": self.response_url_at,
            "via_response_url": self.via_response_url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplyTo:
        return cls(
            thread_ts=str(data.get("thread_ts") or ""),
            message_ts=str(data.get("message_ts") or ""),
            message_channel=str(data.get("message_channel") or ""),
            header=bool(data.get("header", False)),
            response_url=str(data.get("response_url") or ""),
            response_url_at=float(data.get("response_url_at") or 0.0),
            via_response_url=bool(data.get("via_response_url", False)),
        )


class SlackDelivery:
    """The core's calls about a job (`adapters.base.Adapter`) as Slack posts and edits.

    `SlackAdapter` is this plus the app's lifecycle: the outbox is there once it started.
    """

    def __init__(self, *, replies: RemembersReplies, limits: StreamLimits) -> None:
        self._replies = replies
        self.limits = limits
        self._attached_outbox: SlackOutbox | None = None
        self._streams: dict[tuple[str, int | str], StreamingMessage] = {}
        self._response_urls: dict[str, ResponseUrl] = {}

    @property
    def _outbox(self) -> SlackOutbox:
        if self._attached_outbox is None:
            raise RuntimeError("SlackAdapter.start() has not been called")
        return self._attached_outbox

    # ---- lookup -----------------------------------------------------------------------------

    @staticmethod
    def _key(job: Job) -> tuple[str, int | str]:
        return (job.platform, job.id or job.idempotency_key)

    def response_url(self, url: str, issued_at: float | None = None) -> ResponseUrl:
        """One tracker per URL for the whole process, so its uses are counted across jobs."""
        tracker = self._response_urls.get(url)
        if tracker is None:
            tracker = ResponseUrl(url) if issued_at is None else ResponseUrl(url, issued_at)
            self._response_urls[url] = tracker
            if len(self._response_urls) > 2000:  # drop the oldest; they expire in 30 min anyway
                self._response_urls.pop(next(iter(self._response_urls)))
        return tracker

    def _stream(self, job: Job) -> StreamingMessage:
        key = self._key(job)
        stream = self._streams.get(key)
        if stream is None:
            reply = ReplyTo.from_dict(job.reply_to)
            stream = StreamingMessage(
                self._outbox,
                job.channel,
                thread_ts=reply.thread_ts or None,
                existing_ts=reply.message_ts or None,
                existing_channel=reply.message_channel or None,
            )
            self._streams[key] = stream
        return stream

    async def _show(self, job: Job, text: str) -> None:
        stream = self._stream(job)
        await stream.show(text)
        await self._remember(job, stream)

    async def _remember(self, job: Job, stream: StreamingMessage) -> None:
        """Store the job's message with the job once it exists (or was replaced), so whoever
        delivers the job next edits it. A failure costs only a second message later."""
        posted = stream.posted
        if posted is None or not job.id or stream.stored_ts == posted.ts:
            return
        stream.stored_ts = posted.ts  # once: a failure is not retried at every edit
        try:
            await self._replies.remember_reply(
                job.id, {"message_ts": posted.ts, "message_channel": posted.channel}
            )
        except Exception as exc:
            log.warning("job %s: could not store its Slack message (%s)", job.id, exc)

    def _header(self, job: Job) -> str | None:
        reply = ReplyTo.from_dict(job.reply_to)
        if reply.header and job.kind == JobKind.QUESTION:
            return fmt.question_header(job.user, job.text)
        return None

    # ---- the core's callbacks (see adapters/base.py) ------------------------------------------

    async def acknowledge(self, job: Job, position: int, eta_s: float | None) -> None:
        if job.kind == JobKind.FORGET or self._quiet(job) or self._key(job) in self._streams:
            return  # (if a stream exists, the worker has already started on the job)
        await self._show(
            job, fmt.with_header(self._header(job), fmt.queued(position, eta_s))
        )

    async def post_status(self, job: Job, text: str) -> None:
        if self._quiet(job):
            return
        await self._show(job, fmt.with_header(self._header(job), f"_{escape(text)}_"))

    async def stream_partial(self, job: Job, text: str) -> None:
        if self._quiet(job):
            return
        await self._show(job, fmt.with_header(self._header(job), fmt.partial_text(text)))

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        if self._quiet(job):
            return
        await self._show(job, fmt.ingest_progress(name, done, total))

    async def post_answer(self, job: Job, answer: Answer) -> None:
        await self._finish(job, fmt.with_header(self._header(job), fmt.answer_text(answer)))

    async def post_ingest_report(self, job: Job, report: IngestReport) -> None:
        await self._finish(job, fmt.ingest_summary(report))

    async def post_notice(self, job: Job, text: str) -> None:
        """A one-line result meant for the requester (e.g. a document was forgotten)."""
        if job.kind == JobKind.FORGET or self._key(job) not in self._streams:
            await self._private(job, escape(text))
            return
        await self._finish(job, escape(text))

    async def post_error(self, job: Job, message: str) -> None:
        text = f":warning: {escape(message)}"
        if job.kind == JobKind.FORGET:
            await self._private(job, text)
            return
        await self._finish(job, fmt.with_header(self._header(job), text))

    def _quiet(self, job: Job) -> bool:
        """No message of ours to edit: only the final reply is sent, through the response_url."""
        return ReplyTo.from_dict(job.reply_to).via_response_url

    async def _finish(self, job: Job, text: str) -> None:
        if self._quiet(job):
            await self._final_via_response_url(job, text)
            return
        stream = self._stream(job)
        self._streams.pop(self._key(job), None)
        await retry_transient(
            lambda: stream.finish(text),
            transient=transient_error,
            what=f"Slack: the reply to job {job.id}",
        )
        # (a crash before the core marks it delivered re-delivers into this same message)
        await self._remember(job, stream)

    async def _final_via_response_url(self, job: Job, text: str) -> None:
        """Where the app cannot post (not invited, a DM between others), the command's
        response_url can still answer in the channel, while Slack honours it."""
        reply = ReplyTo.from_dict(job.reply_to)
        if reply.response_url:
            tracker = self.response_url(reply.response_url, reply.response_url_at or None)
            pieces = split_message(text, self._outbox.message_limit)
            if len(pieces) <= RESPONSE_URL_MAX_USES - tracker.uses:
                sent = True
                for piece in pieces:
                    sent = sent and await self._outbox.respond(tracker, piece, in_channel=True)
                if sent:
                    return
        log.warning("job %s: no way left to answer in %s", job.id, job.channel)
        await self._outbox.ephemeral(
            job.channel,
            job.user,
            "I could not post the answer here: invite me to this channel (`/invite @Folio`).",
        )

    async def _private(self, job: Job, text: str) -> None:
        reply = ReplyTo.from_dict(job.reply_to)
        tracker = (
            self.response_url(reply.response_url, reply.response_url_at or None)
            if reply.response_url
            else None
        )
        await self._outbox.ephemeral(
            job.channel, job.user, text, response_url=tracker, thread_ts=reply.thread_ts or None
        )


def transient_error(exc: BaseException) -> bool:
    """Worth trying again later: rate limited (after slack_sdk's own retries), Slack's servers
    failing (slack_sdk never retries a 502), or the network."""
    import aiohttp
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status == 429 or status >= 500 or exc.response.get("error") in _TRANSIENT_ERRORS
    return isinstance(exc, OSError | TimeoutError | aiohttp.ClientError)


_TRANSIENT_ERRORS = (
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
)
