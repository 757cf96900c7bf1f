"""The discord.py client Folio runs: no privileged intents, no mentions, one command tree."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from adapters.discord.commands import build_commands
from adapters.discord.outlets import NO_MENTIONS
from bot.replies import user_message

if TYPE_CHECKING:
    from adapters.discord.handlers import DiscordHandlers

log = logging.getLogger(__name__)


def folio_intents() -> discord.Intents:
    """Guild and DM messages only. Without Message Content, Discord still sends the text of
    messages that mention the bot, of DMs, and of slash commands."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    return intents


class FolioClient(discord.Client):
    def __init__(self, *, sync_commands: bool) -> None:
        super().__init__(intents=folio_intents(), allowed_mentions=NO_MENTIONS)
        self.tree: app_commands.CommandTree[FolioClient] = app_commands.CommandTree(self)
        self.tree.on_error = self._on_command_error  # type: ignore[method-assign]
        self._sync_commands = sync_commands
        self._folio: DiscordHandlers | None = None
        self.logged_in = asyncio.Event()

    def attach(self, handlers: DiscordHandlers) -> None:
        self._folio = handlers
        for command in build_commands(handlers):
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        """Runs once, after login and before the Gateway connects."""
        if self._sync_commands:
            commands = await self.tree.sync()
            log.info("Discord: %d slash commands registered", len(commands))
        self.logged_in.set()

    async def on_ready(self) -> None:
        log.info("Discord: connected as %s to %d server(s)", self.user, len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        if self._folio is not None:
            await self._folio.on_message(message)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A deleted question cancels its answer (delivered with the guild-messages intent)."""
        if self._folio is not None:
            await self._folio.on_message_deleted(payload.message_id)

    async def _on_command_error(
        self, interaction: discord.Interaction[FolioClient], error: app_commands.AppCommandError
    ) -> None:
        """Every command error ends here: the user gets a line, the log gets the traceback."""
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        name = interaction.command.name if interaction.command else "?"
        text = user_message(cause, context=f"discord command /{name}")
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=NO_MENTIONS
                )
        except discord.HTTPException:
            log.warning("could not tell the user about a failed command", exc_info=True)
