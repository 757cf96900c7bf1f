"""Where a job's replies go in Discord, and how they get there.

A job carries, in `reply_to`, what is needed to answer it even after a restart: the channel (or
thread), the user message to reply to, and (stored as soon as it is posted) the job's own message.
While the process lives, the job's `StreamingReply` (over a channel or a live interaction) is kept
here, so the acknowledgement, the statuses, the partial answer and the final answer are one
message that grows by edits (the core's throttle decides when). A process without that stream
(after a restart, or another node of a shared queue) edits the stored message through the
channel (interaction tokens are per process and short-lived), and posts a new one only if it is
gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.base import RemembersReplies, StreamLimits
from adapters.discord import format as fmt
from adapters.discord.stream import MESSAGE_LIMIT, StreamingReply
from adapters.retry import retry_transient
from bot.jobs import Job
from bot.render import render_ingest_progress
from rag.types import Answer, IngestReport

if TYPE_CHECKING:  # discord.py loads when the adapter starts, not when this module is imported
    import discord

    from adapters.discord.outlets import ChannelOutlet, Outlet

log = logging.getLogger(__name__)

PLATFORM = "discord"


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """The Discord side of `Job.reply_to`."""

    channel_id: int  # the channel, thread or DM the replies go to
    reply_to_message_id: int = 0  # the user's message to reply to (0: none)
    header: str = ""  # said first when the answer is not an interaction response
    message_id: int = 0  # the job's own message, once posted (0: none yet)
    message_channel_id: int = 0  # where that message is

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel_id": str(self.channel_id),
            "reply_to_message_id": str(self.reply_to_message_id),
            "header": self.header,
            "message_id": str(self.message_id),
            "message_channel_id": str(self.message_channel_id),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplyTo:
        return cls(
            channel_id=int(data.get("channel_id") or 0),
            reply_to_message_id=int(data.get("reply_to_message_id") or 0),
            header=str(data.get("header") or ""),
            message_id=int(data.get("message_id") or 0),
            message_channel_id=int(data.get("message_channel_id") or 0),
        )


class _JobReply:
    """The stream of one job, and a lock so the core's calls for it never interleave."""

    def __init__(self, stream: StreamingReply, stored_id: int = 0) -> None:
        self.stream = stream
        self.lock = asyncio.Lock()
        self.stored_id = stored_id  # the message the job's stored `reply_to` names


class DiscordDelivery:
    """The core's calls about a job (`adapters.base.Adapter`) as Discord messages and edits.

    `DiscordAdapter` is this plus the Gateway's lifecycle: the client is there once it started.
    """

    platform = PLATFORM

    def __init__(self, *, replies: RemembersReplies, edit_interval_s: float) -> None:
        self._replies = replies
        self.limits = StreamLimits(edit_interval_s=edit_interval_s, message_limit=MESSAGE_LIMIT)
        self._client: discord.Client | None = None
        self._jobs: dict[str, _JobReply] = {}

    @property
    def client(self) -> discord.Client:
        if self._client is None:
            raise RuntimeError("DiscordAdapter.start() has not been called")
        return self._client

    # ---- registration (by the event handlers, before the job is submitted) --------------------

    def register(self, job: Job, outlet: Outlet) -> StreamingReply:
        stream = self._new_stream(outlet)
        self._jobs[job.idempotency_key] = _JobReply(stream)
        return stream

    def forget(self, job: Job) -> None:
        self._jobs.pop(job.idempotency_key, None)

    def _new_stream(
        self, outlet: Outlet, existing: discord.PartialMessage | None = None
    ) -> StreamingReply:
        return StreamingReply(outlet, existing=existing)

    def _reply(self, job: Job) -> _JobReply:
        reply = self._jobs.get(job.idempotency_key)
        if reply is None:  # after a restart, or another node's job: answer in its channel
            target = ReplyTo.from_dict(job.reply_to)
            existing = None
            if target.message_id:  # edit the message posted for it before
                where = self.client.get_partial_messageable(
                    target.message_channel_id or target.channel_id
                )
                existing = where.get_partial_message(target.message_id)
            stream = self._new_stream(self._outlet_from(target), existing)
            reply = _JobReply(stream, stored_id=target.message_id)
            self._jobs[job.idempotency_key] = reply
        return reply

    def _outlet_from(self, target: ReplyTo) -> ChannelOutlet:
        from adapters.discord.outlets import ChannelOutlet

        channel = self.client.get_partial_messageable(target.channel_id)
        reference: discord.PartialMessage | None = None
        if target.reply_to_message_id:
            reference = channel.get_partial_message(target.reply_to_message_id)
        return ChannelOutlet(channel, reply_to=reference, header=target.header)

    async def _remember(self, job: Job, reply: _JobReply) -> None:
        """Store the job's message with the job once it exists (or was replaced), so whoever
        delivers the job next edits it. Ephemeral messages are left out: only their
        interaction's token, which dies with this process, can edit them."""
        message = reply.stream.message
        if message is None or not job.id or message.id == reply.stored_id:
            return
        import discord

        if isinstance(message, discord.Message) and message.flags.ephemeral:
            return
        reply.stored_id = message.id  # once: a failure is not retried at every edit
        try:
            await self._replies.remember_reply(
                job.id,
                {"message_id": str(message.id), "message_channel_id": str(message.channel.id)},
            )
        except Exception as exc:
            log.warning("job %s: could not store its Discord message (%s)", job.id, exc)

    # ---- adapters.base.Adapter: what the core tells us ---------------------------------------

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        await self.post_status(job, fmt.queued_line(position, eta_s))

    async def post_status(self, job: Job, text: str) -> None:
        await self._show(job, fmt.status_line(text))

    async def stream_partial(self, job: Job, text: str) -> None:
        await self._show(job, fmt.no_previews(text) + " …")

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        await self.post_status(job, render_ingest_progress(name, done, total))

    async def post_answer(self, job: Job, answer: Answer) -> None:
        await self.final(job, fmt.answer_messages(answer))

    async def post_ingest_report(self, job: Job, report: IngestReport) -> None:
        await self.final(job, fmt.ingest_messages(report))

    async def post_notice(self, job: Job, text: str) -> None:
        await self.final(job, fmt.messages(text))

    async def post_error(self, job: Job, message: str) -> None:
        await self.final(job, fmt.messages(message))

    async def _show(self, job: Job, text: str) -> None:
        reply = self._reply(job)
        async with reply.lock:  # the handlers' first post and the core's calls never interleave
            await reply.stream.show(text)
            await self._remember(job, reply)

    async def final(self, job: Job, pieces: Sequence[str]) -> None:
        """The finished reply; retried through 429s and 5xx (see `adapters.retry`)."""
        reply = self._reply(job)
        try:
            async with reply.lock:
                await retry_transient(
                    lambda: reply.stream.finish(pieces),
                    transient=transient_error,
                    what=f"Discord: the reply to job {job.id}",
                )
                # (a crash before the core marks it delivered re-delivers into this message)
                await self._remember(job, reply)
        finally:
            self.forget(job)


def transient_error(exc: BaseException) -> bool:
    """Worth trying again later: rate limited, Discord's servers failing, or the network."""
    import aiohttp
    import discord

    if isinstance(exc, discord.HTTPException):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, discord.RateLimited | OSError | TimeoutError | aiohttp.ClientError)
