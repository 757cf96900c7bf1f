"""Where one job's messages go: a channel or thread, or an interaction (with a channel fallback).

Everything the bot sends goes through here, so every message carries
`allowed_mentions=none` (no document text can ping anyone) and suppressed link previews.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import discord

if TYPE_CHECKING:
    from discord.abc import Messageable

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
# Interaction tokens last 15 minutes; stop using one a little before, so a long send cannot
# straddle the deadline.
TOKEN_MARGIN = datetime.timedelta(seconds=30)
# What Discord answers when an interaction token is no longer valid.
# Unknown Webhook, Unknown interaction, Invalid Webhook Token.
_EXPIRED_CODES = {10015, 10062, 50027}

Sent = discord.Message  # InteractionMessage and WebhookMessage are Message subclasses


class Outlet(Protocol):
    """Sends and edits the messages of one job."""

    async def send(self, text: str) -> Sent: ...

    async def edit(self, message: Sent | discord.PartialMessage, text: str) -> Sent:
        """Edit `message`; may return a new message if the old one can no longer be edited."""
        ...


class ChannelOutlet:
    """Messages in a channel, thread or DM; the first one may reply to the user's message."""

    def __init__(
        self,
        channel: Messageable,
        *,
        reply_to: discord.Message | discord.PartialMessage | None = None,
        header: str = "",
    ) -> None:
        self.channel = channel
        self._reply_to = reply_to
        self._header = header.strip()  # its own message before the first one (whom it is for)

    async def send(self, text: str) -> Sent:
        # The header and the reply reference are used up only once sent: after a failed send
        # (a 5xx, a 429), the next attempt still says whom it is for.
        if self._header:
            await self.channel.send(
                self._header, allowed_mentions=NO_MENTIONS, suppress_embeds=True
            )
            self._header = ""
        reference = self._reply_to
        if reference is not None:
            sent = await self.channel.send(
                text,
                reference=reference.to_reference(fail_if_not_exists=False),
                mention_author=False,
                allowed_mentions=NO_MENTIONS,
                suppress_embeds=True,
            )
            self._reply_to = None
            return sent
        return await self.channel.send(text, allowed_mentions=NO_MENTIONS, suppress_embeds=True)

    async def edit(self, message: Sent | discord.PartialMessage, text: str) -> Sent:
        try:
            if isinstance(message, discord.Message):
                # discord.py sends `flags` with every edit: keep link previews suppressed
                return await message.edit(content=text, allowed_mentions=NO_MENTIONS, suppress=True)
            # known by its ids only (posted by an earlier process, with previews suppressed);
            # once it was there, the header and the reply reference were said already
            edited = await message.edit(content=text, allowed_mentions=NO_MENTIONS)
        except discord.NotFound:  # deleted meanwhile: carry on in a new message
            log.info("message %s is gone; sending a new one", message.id)
            return await self.send(text)
        except discord.Forbidden:
            if isinstance(message, discord.Message):
                raise
            # not editable through the channel (an interaction's response in a DM, say)
            log.info("message %s cannot be edited here; sending a new one", message.id)
            return await self.send(text)
        self._header = ""
        self._reply_to = None
        return edited


class InteractionOutlet:
    """Replies to a deferred interaction: the first message fills the deferred response, the rest
    are followups. Once the token is (nearly) expired, messages go to the channel instead."""

    def __init__(
        self,
        interaction: discord.Interaction[discord.Client],
        *,
        fallback: ChannelOutlet,
        now: Callable[[], datetime.datetime] = discord.utils.utcnow,
    ) -> None:
        self._interaction = interaction
        self._fallback = fallback
        self._now = now
        self._used_original = False
        self.expired = False

    def _token_usable(self) -> bool:
        if not self.expired:
            deadline = self._interaction.expires_at - TOKEN_MARGIN
            self.expired = self._now() >= deadline
        return not self.expired

    async def send(self, text: str) -> Sent:
        if self._token_usable():
            try:
                if not self._used_original:
                    # marked used only once it worked: after a 5xx the next message still
                    # fills the deferred response instead of leaving it "thinking…" forever
                    sent = await self._interaction.edit_original_response(
                        content=text, allowed_mentions=NO_MENTIONS
                    )
                    self._used_original = True
                    return sent
                return await self._interaction.followup.send(
                    text, allowed_mentions=NO_MENTIONS, suppress_embeds=True, wait=True
                )
            except discord.HTTPException as exc:
                if not _token_expired(exc):
                    raise
                log.info("interaction %s expired; answering in the channel", self._interaction.id)
                self.expired = True
        return await self._fallback.send(text)

    async def edit(self, message: Sent | discord.PartialMessage, text: str) -> Sent:
        if isinstance(message, discord.InteractionMessage | discord.WebhookMessage):
            if not self._token_usable():
                return await self._fallback.send(text)
            try:
                return await message.edit(content=text, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc:
                if not _token_expired(exc):
                    raise
                self.expired = True
                return await self._fallback.send(text)
        return await self._fallback.edit(message, text)


def _token_expired(exc: discord.HTTPException) -> bool:
    return exc.status == 401 or exc.code in _EXPIRED_CODES
