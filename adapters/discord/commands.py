"""The slash commands: thin callbacks that hand the interaction to `DiscordHandlers`.

discord.py reads each callback's parameters (names, annotations, descriptions) to build the
command's options, so the signatures here are the commands' public shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

if TYPE_CHECKING:
    from adapters.discord.handlers import DiscordHandlers

Interaction = discord.Interaction[discord.Client]


def build_commands(handlers: DiscordHandlers) -> list[app_commands.Command[Any, ..., None]]:
    """Fresh command objects bound to `handlers` (one set per client)."""

    @app_commands.command(name="ask", description="Ask a question about this server's documents.")
    @app_commands.describe(question="What you want to know")
    async def ask(interaction: Interaction, question: app_commands.Range[str, 1, 1500]) -> None:
        await handlers.ask(interaction, question)

    @app_commands.command(name="ingest", description="Admins: index a PDF for this server.")
    @app_commands.describe(file="The PDF to index")
    async def ingest(interaction: Interaction, file: discord.Attachment) -> None:
        await handlers.ingest(interaction, file)

    @app_commands.command(name="docs", description="List the documents indexed for this server.")
    async def docs(interaction: Interaction) -> None:
        await handlers.docs(interaction)

    @app_commands.command(name="forget", description="Admins: remove a document from this server.")
    @app_commands.describe(name="The document's file name, as /docs shows it")
    async def forget(interaction: Interaction, name: app_commands.Range[str, 1, 200]) -> None:
        await handlers.forget(interaction, name)

    @app_commands.command(name="cancel", description="Cancel your waiting or running question.")
    async def cancel(interaction: Interaction) -> None:
        await handlers.cancel(interaction)

    @app_commands.command(name="history", description="Your recent questions (only you see them).")
    async def history(interaction: Interaction) -> None:
        await handlers.history(interaction)

    return [ask, ingest, docs, forget, cancel, history]
