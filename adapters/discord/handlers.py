"""Discord events → jobs: mentions, replies and thread messages, and the slash commands.

Every path ends in one of two places: a `Job` submitted to the core (whose replies then come back
through `DiscordDelivery`), or a short reply said at once (a refusal, a declined DM, a list).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import discord
from discord.abc import Messageable

from adapters.discord import format as fmt
from adapters.discord.admin import REFUSAL, is_admin
from adapters.discord.attachments import download_pdf, pdf_attachments
from adapters.discord.delivery import DiscordDelivery, ReplyTo
from adapters.discord.outlets import ChannelOutlet, InteractionOutlet, Outlet
from adapters.discord.ports import CorePort
from adapters.discord.settings import DiscordSettings
from bot.jobs import Attachment, Job, JobKind
from bot.replies import user_message

log = logging.getLogger(__name__)

PLATFORM = "discord"
DM_DECLINED = "I only answer questions in server channels here; mention me there, or use `/ask`."
EMPTY_QUESTION = "Ask me a question about the documents, e.g. `@Folio what is the refund policy?`"
THREAD_ARCHIVE_MINUTES: Literal[60, 1440, 4320, 10080] = 1440
Interaction = discord.Interaction[discord.Client]


class DiscordHandlers:
    """What the bot does for each Discord event; owns no connection (the client calls in)."""

    def __init__(
        self,
        core: CorePort,
        settings: DiscordSettings,
        client: discord.Client,
        delivery: DiscordDelivery,
    ) -> None:
        self._core = core
        self._settings = settings
        self._client = client
        self._delivery = delivery

    # ---- messages ---------------------------------------------------------------------------

    async def on_message_deleted(self, message_id: int) -> None:
        try:
            job = await self._core.cancel_for_deleted_message(PLATFORM, str(message_id))
        except Exception:
            log.exception("Discord: cancelling the job of deleted message %s failed", message_id)
            return
        if job is not None:
            log.info("Discord: job %s cancelled because its message was deleted", job.id)

    async def on_message(self, message: discord.Message) -> None:
        me = self._client.user
        if me is None or message.author.bot or not self._addressed_to_me(message, me.id):
            return
        try:
            await self._handle_message(message, me.id)
        except Exception as exc:  # one place for errors: the user hears, the log has the rest
            text = user_message(exc, context=f"discord message {message.id}")
            await ChannelOutlet(message.channel, reply_to=message).send(text)

    @staticmethod
    def _addressed_to_me(message: discord.Message, my_id: int) -> bool:
        """A DM, a real mention of the bot's user (not @everyone/@here, not a role), a reply to
        one of its messages, or a message in a thread it started."""
        if message.guild is None or any(user.id == my_id for user in message.mentions):
            return True
        resolved = message.reference.resolved if message.reference else None
        if isinstance(resolved, discord.Message) and resolved.author.id == my_id:
            return True
        return isinstance(message.channel, discord.Thread) and message.channel.owner_id == my_id

    async def _handle_message(self, message: discord.Message, my_id: int) -> None:
        collection = self._collection(message.guild)
        if collection is None:
            await ChannelOutlet(message.channel, reply_to=message).send(DM_DECLINED)
            return
        pdfs = pdf_attachments(message.attachments)
        if pdfs:
            await self._ingest_from_message(message, collection, pdfs)
            return
        question = _strip_mention(message.content, my_id)
        if not question:
            if message.content or message.guild is None:  # Discord hid nothing: it is empty
                await ChannelOutlet(message.channel, reply_to=message).send(EMPTY_QUESTION)
            return  # a thread message without a mention: Discord hides its text from us
        outlet, target, thread_id = await self._answer_place(message, question)
        job = self._job(
            JobKind.QUESTION,
            collection=collection,
            channel=message.channel,
            thread_id=thread_id,
            user=message.author,
            key=f"message-{message.id}",
            text=question,
            message_id=message.id,
            target=target,
        )
        await self._submit(job, outlet)

    async def _answer_place(
        self, message: discord.Message, question: str
    ) -> tuple[ChannelOutlet, ReplyTo, int]:
        """A new thread on the question where allowed; else a reply in place."""
        channel = message.channel
        if isinstance(channel, discord.Thread):
            return (
                ChannelOutlet(channel, reply_to=message),
                ReplyTo(channel.id, message.id),
                channel.id,
            )
        if isinstance(channel, discord.TextChannel):
            try:
                thread = await message.create_thread(
                    name=fmt.thread_name(question), auto_archive_duration=THREAD_ARCHIVE_MINUTES
                )
            except discord.HTTPException as exc:  # no permission, or not allowed here
                log.info("cannot start a thread in %s (%s); replying in place", channel.id, exc)
            else:
                return ChannelOutlet(thread), ReplyTo(thread.id), thread.id
        return ChannelOutlet(channel, reply_to=message), ReplyTo(channel.id, message.id), 0

    async def _ingest_from_message(
        self, message: discord.Message, collection: str, pdfs: list[discord.Attachment]
    ) -> None:
        outlet = ChannelOutlet(message.channel, reply_to=message)
        if not self._message_author_is_admin(message):
            await outlet.send(REFUSAL)
            return
        for index, pdf in enumerate(pdfs):
            # each file is its own job; the first replies to the message, the rest follow it
            file_outlet = outlet if index == 0 else ChannelOutlet(message.channel)
            await self._ingest(
                pdf,
                collection=collection,
                channel=message.channel,
                user=message.author,
                key=f"message-{message.id}-{pdf.id}",
                message_id=message.id,
                outlet=file_outlet,
                target=ReplyTo(message.channel.id, message.id),
            )

    def _message_author_is_admin(self, message: discord.Message) -> bool:
        author = message.author
        if isinstance(author, discord.Member):
            return is_admin(
                user_id=author.id,
                role_ids=[role.id for role in author.roles],
                manage_guild=author.guild_permissions.manage_guild,
                in_guild=True,
                settings=self._settings,
            )
        return is_admin(
            user_id=author.id,
            role_ids=(),
            manage_guild=False,
            in_guild=False,
            settings=self._settings,
        )

    # ---- slash commands (each one defers first, then works) ---------------------------------

    async def ask(self, interaction: Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        outlet = self._interaction_outlet(interaction, header=_asked(interaction, question))
        collection = self._collection(interaction.guild)
        if collection is None:
            await outlet.send(DM_DECLINED)
            return
        job = self._job(
            JobKind.QUESTION,
            collection=collection,
            channel=interaction.channel,
            thread_id=_thread_id(interaction.channel),
            user=interaction.user,
            key=f"interaction-{interaction.id}",
            text=question.strip(),
            message_id=0,
            target=ReplyTo(_channel_id(interaction), header=_asked(interaction, question)),
        )
        await self._submit(job, outlet)

    async def _start_admin_command(
        self, interaction: Interaction
    ) -> tuple[InteractionOutlet, str] | None:
        """Defer privately, then check the place and the person (on our side, every time).

        Returns (outlet, collection), or None after telling the user why not."""
        await interaction.response.defer(thinking=True, ephemeral=True)
        outlet = self._interaction_outlet(interaction)
        collection = self._collection(interaction.guild)
        if collection is None:
            await outlet.send(DM_DECLINED)
            return None
        if not self._interaction_user_is_admin(interaction):
            await outlet.send(REFUSAL)
            return None
        return outlet, collection

    async def ingest(self, interaction: Interaction, file: discord.Attachment) -> None:
        admitted = await self._start_admin_command(interaction)
        if admitted is None:
            return
        outlet, collection = admitted
        await self._ingest(
            file,
            collection=collection,
            channel=interaction.channel,
            user=interaction.user,
            key=f"interaction-{interaction.id}",
            message_id=0,
            outlet=outlet,
            target=ReplyTo(_channel_id(interaction), header=f"For <@{interaction.user.id}>:"),
        )

    async def forget(self, interaction: Interaction, name: str) -> None:
        admitted = await self._start_admin_command(interaction)
        if admitted is None:
            return
        outlet, collection = admitted
        job = self._job(
            JobKind.FORGET,
            collection=collection,
            channel=interaction.channel,
            thread_id=0,
            user=interaction.user,
            key=f"interaction-{interaction.id}",
            text=name.strip(),
            message_id=0,
            target=ReplyTo(_channel_id(interaction), header=f"For <@{interaction.user.id}>:"),
        )
        await self._submit(job, outlet)

    async def docs(self, interaction: Interaction) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        outlet = self._interaction_outlet(interaction)
        collection = self._collection(interaction.guild)
        if collection is None:
            await outlet.send(DM_DECLINED)
            return
        await self._say(outlet, lambda: self._core.documents(collection), fmt.docs_messages)

    async def cancel(self, interaction: Interaction) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        outlet = self._interaction_outlet(interaction)
        await self._say(
            outlet,
            lambda: self._core.cancel(PLATFORM, str(interaction.user.id)),
            fmt.cancel_messages,
        )

    async def history(self, interaction: Interaction) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        outlet = self._interaction_outlet(interaction)
        await self._say(
            outlet,
            lambda: self._core.history(PLATFORM, str(interaction.user.id), limit=10),
            fmt.history_messages,
        )

    def _interaction_user_is_admin(self, interaction: Interaction) -> bool:
        user = interaction.user
        roles = [role.id for role in user.roles] if isinstance(user, discord.Member) else []
        return is_admin(
            user_id=user.id,
            role_ids=roles,
            manage_guild=interaction.permissions.manage_guild,
            in_guild=interaction.guild_id is not None,
            settings=self._settings,
        )

    def _interaction_outlet(
        self, interaction: Interaction, *, header: str = ""
    ) -> InteractionOutlet:
        channel: Messageable
        if isinstance(interaction.channel, discord.abc.Messageable):
            channel = interaction.channel
        else:
            channel = self._client.get_partial_messageable(_channel_id(interaction))
        return InteractionOutlet(interaction, fallback=ChannelOutlet(channel, header=header))

    # ---- shared -----------------------------------------------------------------------------

    def _collection(self, guild: discord.Guild | None) -> str | None:
        if guild is not None:
            return f"discord-{guild.id}"  # every guild has its own collection
        return self._settings.dm_collection

    async def _ingest(
        self,
        pdf: discord.Attachment,
        *,
        collection: str,
        channel: Any,
        user: discord.abc.User,
        key: str,
        message_id: int,
        outlet: Outlet,
        target: ReplyTo,
    ) -> None:
        try:
            attachment: Attachment = await download_pdf(pdf, self._settings.max_attachment_bytes)
        except Exception as exc:
            await outlet.send(user_message(exc, context=f"discord attachment {pdf.id}"))
            return
        job = self._job(
            JobKind.INGEST,
            collection=collection,
            channel=channel,
            thread_id=0,
            user=user,
            key=key,
            text=attachment.filename,
            message_id=message_id,
            target=target,
            attachment=attachment,
        )
        await self._submit(job, outlet)

    def _job(
        self,
        kind: JobKind,
        *,
        collection: str,
        channel: Any,
        thread_id: int,
        user: discord.abc.User,
        key: str,
        text: str,
        message_id: int,
        target: ReplyTo,
        attachment: Attachment | None = None,
    ) -> Job:
        channel_id = getattr(channel, "id", 0)
        if isinstance(channel, discord.Thread):  # `thread` names the thread; `channel` its parent
            channel_id = channel.parent_id
        return Job(
            kind=kind,
            platform=PLATFORM,
            collection=collection,
            channel=str(channel_id),
            user=str(user.id),
            idempotency_key=key,
            text=text,
            thread=str(thread_id) if thread_id else "",
            message_id=str(message_id) if message_id else "",
            attachment=attachment,
            reply_to=target.to_dict(),
        )

    async def _submit(self, job: Job, outlet: Outlet) -> None:
        """Queue the job; the core's calls for it find this outlet through `DiscordDelivery`."""
        self._delivery.register(job, outlet)
        try:
            await self._core.submit(job)  # the core then calls `acknowledge` and the rest
        except Exception as exc:
            message = user_message(exc, context=f"submit {job.idempotency_key}")
            await self._delivery.post_error(job, message)

    @staticmethod
    async def _say(outlet: Outlet, fetch: Any, render: Any) -> None:
        try:
            pieces = render(await fetch())
        except Exception as exc:
            pieces = [user_message(exc)]
        for piece in pieces:
            await outlet.send(piece)


def _strip_mention(content: str, my_id: int) -> str:
    return re.sub(rf"<@!?{my_id}>", " ", content).strip()


def _asked(interaction: Interaction, question: str) -> str:
    """Names who asked, for an answer posted in the channel after the token expired."""
    short = " ".join(question.split())
    short = short if len(short) <= 200 else short[:199] + "…"
    return f"<@{interaction.user.id}> asked: {fmt.no_previews(short)}"


def _channel_id(interaction: Interaction) -> int:
    return interaction.channel_id or 0


def _thread_id(channel: Any) -> int:
    return channel.id if isinstance(channel, discord.Thread) else 0
