"""Fixtures for the Discord tests: a fake Discord on loopback, and discord.py pointed at it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# The repository root, so `bot`, `rag` and `adapters` import when pytest runs from anywhere; the
# bot tests' folder, for their FakeEngine (the tests with the real core).
_ROOT = Path(__file__).resolve().parents[3]
for _path in (_ROOT / "tests" / "bot", _ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from discord_harness import TOKEN, Bot, StartBot, assert_no_mentions_anywhere  # noqa: E402
from fake_discord import FakeDiscord  # noqa: E402
from fake_discord_core import FakeCore  # noqa: E402

from adapters.discord.adapter import DiscordAdapter  # noqa: E402
from adapters.discord.settings import DiscordSettings  # noqa: E402


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """A started fake Discord; every discord.py REST route and the Gateway point at it."""
    import discord.gateway
    import discord.http
    import yarl

    server = FakeDiscord()
    await server.start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url)
    )
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def start_bot(fake_discord: FakeDiscord) -> AsyncIterator[StartBot]:
    """Start the adapter with the given settings; on teardown, check what it sent."""
    started: list[Bot] = []

    async def start(settings: DiscordSettings | None = None, **options: Any) -> Bot:
        core = FakeCore()
        adapter = DiscordAdapter(core, settings or DiscordSettings(**options), token=TOKEN)
        core.adapter = adapter
        guild = fake_discord.add_guild()
        await adapter.start()
        await asyncio.wait_for(fake_discord.ready.wait(), 5)
        bot = Bot(fake_discord, core, adapter, guild, fake_discord.text_channel(guild))
        started.append(bot)
        return bot

    yield start
    for bot in started:
        await bot.adapter.stop()
        await bot.core.close()
        assert not bot.core.errors, bot.core.errors
        assert_no_mentions_anywhere(bot.fake)


@pytest.fixture
async def bot(start_bot: StartBot) -> Bot:
    return await start_bot()
