"""Slack events and commands → Folio jobs. Each listener acknowledges Slack first (within its 3 s
deadline) and leaves the slow work to the core's worker, which answers through `SlackDelivery`.

Every delivery of the same event (`event_id`) or command (`trigger_id`) maps to one idempotency
key, so Slack's retries never produce a second answer: a small in-memory set stops them before any
message is posted, and the core's key stops them for good (across restarts).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from adapters.base import RemembersReplies
from adapters.slack import format as fmt
from adapters.slack.admin import AdminCheck
from adapters.slack.delivery import ReplyTo, SlackDelivery
from adapters.slack.files import file_id_from_link
from adapters.slack.mrkdwn import escape, to_plain
from adapters.slack.outbox import Posted, SlackOutbox
from adapters.slack.settings import SlackSettings
from bot.errors import DuplicateJobError, FolioError
from bot.history import HistoryEntry
from bot.jobs import Accepted, Attachment, Job, JobKind
from bot.replies import user_message
from rag.types import DocumentInfo

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_bolt.context.async_context import AsyncBoltContext

log = logging.getLogger(__name__)

PLATFORM = "slack"

FetchAttachment = Callable[[Mapping[str, Any]], Awaitable[Attachment]]


class CorePort(RemembersReplies, Protocol):
    """What this adapter needs of `bot.core.BotCore` (a test can pass a fake)."""

    async def submit(self, job: Job) -> Accepted: ...

    async def cancel(self, platform: str, user: str, job_id: int | None = None) -> Job: ...

    async def history(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]: ...

    async def documents(self, collection: str) -> list[DocumentInfo]: ...


def collection_for(team_id: str) -> str:
    """Each workspace is its own collection."""
    return f"slack-{team_id}"


class _SeenKeys:
    """The idempotency keys seen lately, to drop a retry before it posts anything."""

    def __init__(self, size: int = 4096) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def first_time(self, key: str) -> bool:
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return True


class SlackListeners:
    def __init__(
        self,
        *,
        core: CorePort,
        settings: SlackSettings,
        outbox: SlackOutbox,
        delivery: SlackDelivery,
        admins: AdminCheck,
        fetch: FetchAttachment,
    ) -> None:
        self._core = core
        self._settings = settings
        self._outbox = outbox
        self._delivery = delivery
        self._admins = admins
        self._fetch = fetch
        self._seen = _SeenKeys()

    def register(self, app: AsyncApp) -> None:
        commands = self._settings.commands
        app.command(commands.ask)(self.on_ask)
        app.command(commands.ingest)(self.on_ingest_command)
        app.command(commands.docs)(self.on_docs)
        app.command(commands.forget)(self.on_forget)
        app.command(commands.cancel)(self.on_cancel)
        app.command(commands.history)(self.on_history)
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.error(self.on_error)

    async def _reporting(self, body: Mapping[str, Any], work: Awaitable[None]) -> None:
        """Run the work that follows an ack; a failure is reported to the user by `on_error`.

        (Not left to Bolt: a listener that raises just after `ack()` can lose its ack.)
        """
        try:
            await work
        except Exception as exc:
            await self.on_error(exc, body)

    async def on_error(self, error: Exception, body: Mapping[str, Any]) -> None:
        """Tell the user what failed where they asked (a FolioError's own message, else an
        apology); the traceback of an unexpected error goes to the log."""
        text = f":warning: {escape(user_message(error, context='slack listener'))}"
        try:
            if body.get("response_url") and body.get("channel_id") and body.get("user_id"):
                await self._private(body, text)
            elif isinstance(event := body.get("event"), dict) and event.get("channel"):
                thread = event.get("thread_ts") or (
                    event.get("ts") if event.get("channel_type") != "im" else None
                )
                await self._outbox.post(event["channel"], text, thread_ts=thread)
        except Exception:
            log.exception("could not report a listener error to Slack")

    # ---- questions ----------------------------------------------------------------------------

    async def on_ask(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        question = to_plain(command.get("text", ""))
        if not question:
            await ack(
                text=f"Ask a question about the documents: `{self._settings.commands.ask} "
                "what is the refund policy?`"
            )
            return
        # Acknowledge before any Web API call: those retry on 429s and 5xx, and Slack shows
        # "operation_timeout" when the ack misses its 3 s deadline.
        await ack()
        key = f"command:{command['trigger_id']}"
        if self._seen.first_time(key):
            await self._reporting(command, self._ask(command, question, key))

    async def _ask(self, command: dict[str, Any], question: str, key: str) -> None:
        team, channel, user = command["team_id"], command["channel_id"], command["user_id"]
        # The answer goes in a message of its own, posted now so that its thread (where
        # follow-ups continue the conversation) is known before the job is queued.
        root = await self._try_post(channel, fmt.question_header(user, question) + "\n\n_Queued…_")
        reply = ReplyTo(
            thread_ts=root.ts if root else "",
            message_ts=root.ts if root else "",
            header=True,
            response_url=command.get("response_url", ""),
            response_url_at=time.time(),
            via_response_url=root is None,
        )
        job = Job(
            kind=JobKind.QUESTION,
            platform=PLATFORM,
            collection=collection_for(team),
            channel=channel,
            user=user,
            idempotency_key=key,
            text=question,
            thread=root.ts if root else "",
            message_id=root.ts if root else "",
            reply_to=reply.to_dict(),
        )
        try:
            accepted = await self._core.submit(job)
        except Exception as exc:  # nothing was queued: take the message back, say why
            if root:
                await self._outbox.delete(root)
            if isinstance(exc, DuplicateJobError):  # a redelivery: it is answered already
                return
            raise  # → on_error: the reason, privately, through the response_url
        if root is None:  # the queued note is in the message when there is one
            queued = fmt.queued(accepted.position, accepted.eta_s)
            await self._private(command, f"{queued} The answer will appear here when it is ready.")

    async def on_mention(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """In a channel: answer in the thread of the mention (a follow-up continues it)."""
        thread = event.get("thread_ts") or event["ts"]
        await self._reporting(body, self._on_question(event, body, context, thread=thread))

    async def on_message(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """In a direct message every message is for Folio; the DM is one conversation (or
        a thread in it, if the user replies in one). Channel messages need a mention."""
        if event.get("channel_type") != "im" or event.get("bot_id"):
            return
        if event.get("subtype") not in (None, "file_share"):
            return  # edits, deletions, joins...
        thread = event.get("thread_ts") or ""
        await self._reporting(body, self._on_question(event, body, context, thread=thread))

    async def _on_question(
        self,
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        *,
        thread: str,
    ) -> None:
        key = f"event:{body.get('event_id') or event.get('event_ts') or event['ts']}"
        if not self._seen.first_time(key):
            return
        team = body.get("team_id") or context.team_id or ""
        channel, user = event["channel"], event.get("user", "")
        if event.get("files"):
            await self._ingest_files(event["files"], team, channel, user, thread, key)
            return
        question = to_plain(event.get("text", ""), bot_user_id=context.bot_user_id)
        if not question:
            await self._outbox.post(
                channel,
                "Ask me about the documents, e.g. _@Folio what is the refund policy?_",
                thread_ts=thread,
            )
            return
        job = Job(
            kind=JobKind.QUESTION,
            platform=PLATFORM,
            collection=collection_for(team),
            channel=channel,
            user=user,
            idempotency_key=key,
            text=question,
            thread=thread,
            message_id=event["ts"],
            reply_to=ReplyTo(thread_ts=thread).to_dict(),
        )
        await self._submit(job)

    async def _submit(self, job: Job) -> None:
        """Queue the job; the core then calls `SlackAdapter.acknowledge` and the rest. Other
        failures (queue full, shutting down) propagate to be told to the user."""
        with contextlib.suppress(DuplicateJobError):  # a redelivery: it is answered already
            await self._core.submit(job)

    # ---- ingest ---------------------------------------------------------------------------------

    async def _ingest_files(
        self,
        files: list[dict[str, Any]],
        team: str,
        channel: str,
        user: str,
        thread: str,
        key: str,
    ) -> None:
        if not await self._admins.is_admin(user):
            await self._outbox.post(channel, self._not_admin("add documents"), thread_ts=thread)
            return
        rejected: list[str] = []
        for raw in files:
            try:
                attachment = await self._fetch(raw)
                job = Job(
                    kind=JobKind.INGEST,
                    platform=PLATFORM,
                    collection=collection_for(team),
                    channel=channel,
                    user=user,
                    idempotency_key=f"{key}:{raw.get('id', attachment.filename)}",
                    thread=thread,
                    attachment=attachment,
                    reply_to=ReplyTo(thread_ts=thread).to_dict(),
                )
                await self._submit(job)  # one job per file, each with its own summary
            except FolioError as exc:  # not a PDF, too large, queue full...: say so, go on
                rejected.append(f":warning: {escape(exc.message)}")
        if rejected:
            await self._outbox.post(channel, "\n".join(rejected), thread_ts=thread)

    async def on_ingest_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        usage = f"Usage: `{self._settings.commands.ingest} <link to a PDF shared in Slack>`"
        file_id = file_id_from_link(command.get("text", ""))
        if file_id is None:
            await ack(text=usage)
            return
        key = f"command:{command['trigger_id']}"
        if not self._seen.first_time(key):
            await ack()
            return
        await ack(text="Fetching the file…")
        await self._reporting(command, self._ingest_link(command, file_id, key))

    async def _ingest_link(self, command: dict[str, Any], file_id: str, key: str) -> None:
        team, channel, user = command["team_id"], command["channel_id"], command["user_id"]
        response_url = self._delivery.response_url(command.get("response_url", ""))
        if not await self._admins.is_admin(user):
            await self._private(command, self._not_admin("add documents"))
            return
        attachment = await self._fetch({"id": file_id})  # FileRejected → on_error → the user
        name = escape(attachment.filename)
        root = await self._try_post(channel, f"{fmt.mention(user)} is adding {name}…")
        thread = root.ts if root else ""
        job = Job(
            kind=JobKind.INGEST,
            platform=PLATFORM,
            collection=collection_for(team),
            channel=channel,
            user=user,
            idempotency_key=key,
            thread=thread,
            attachment=attachment,
            reply_to=ReplyTo(
                thread_ts=thread,
                response_url=response_url.url,
                response_url_at=response_url.issued_at,
                via_response_url=root is None,
            ).to_dict(),
        )
        await self._submit(job)

    # ---- documents, forget, cancel, history ---------------------------------------------------

    async def on_docs(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        await self._reporting(command, self._docs(command))

    async def _docs(self, command: dict[str, Any]) -> None:
        docs = await self._core.documents(collection_for(command["team_id"]))
        await self._private(command, fmt.documents_text(docs))

    async def on_forget(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        name = to_plain(command.get("text", ""))
        if not name:
            await ack(
                text=f"Usage: `{self._settings.commands.forget} <document name>` "
                f"(see `{self._settings.commands.docs}`)"
            )
            return
        await ack()
        key = f"command:{command['trigger_id']}"
        if self._seen.first_time(key):
            await self._reporting(command, self._forget(command, name, key))

    async def _forget(self, command: dict[str, Any], name: str, key: str) -> None:
        user = command["user_id"]
        if not await self._admins.is_admin(user):
            await self._private(command, self._not_admin("remove documents"))
            return
        job = Job(
            kind=JobKind.FORGET,
            platform=PLATFORM,
            collection=collection_for(command["team_id"]),
            channel=command["channel_id"],
            user=user,
            idempotency_key=key,
            text=name,
            reply_to=ReplyTo(
                response_url=command.get("response_url", ""), response_url_at=time.time()
            ).to_dict(),
        )
        await self._submit(job)  # the core answers with post_notice or post_error

    async def on_cancel(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        """`/cancel` stops the user's latest request; `/cancel 12` stops their job 12."""
        arg = command.get("text", "").strip().lstrip("#")
        if arg and not arg.isdigit():
            await ack(
                text=f"Usage: `{self._settings.commands.cancel}` or "
                f"`{self._settings.commands.cancel} <job number>`"
            )
            return
        await ack()
        await self._reporting(command, self._cancel(command, int(arg) if arg else None))

    async def _cancel(self, command: dict[str, Any], job_id: int | None) -> None:
        job = await self._core.cancel(PLATFORM, command["user_id"], job_id)
        what = f"_{escape(job.text)}_" if job.text else f"job {job.id}"
        await self._private(command, f"Cancelling {what}.")

    async def on_history(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        await self._reporting(command, self._history(command))

    async def _history(self, command: dict[str, Any]) -> None:
        entries = await self._core.history(PLATFORM, command["user_id"], limit=10)
        await self._private(command, fmt.history_text(entries))

    # ---- helpers --------------------------------------------------------------------------------

    def _not_admin(self, what: str) -> str:
        return f"Only workspace admins and owners (or users named in Folio's config) can {what}."

    async def _private(self, command: Mapping[str, Any], text: str) -> None:
        url = command.get("response_url")
        await self._outbox.ephemeral(
            command["channel_id"],
            command["user_id"],
            text,
            response_url=self._delivery.response_url(url) if url else None,
        )

    async def _try_post(self, channel: str, text: str) -> Posted | None:
        """Post into the channel, or None when the app may not (not a member, a private DM)."""
        from slack_sdk.errors import SlackApiError

        try:
            return await self._outbox.post(channel, text)
        except SlackApiError as exc:
            log.info("cannot post in %s: %s", channel, exc.response.get("error"))
            return None
