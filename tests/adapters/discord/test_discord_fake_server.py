"""The fake Discord against a plain discord.py client: login, Gateway, events, REST, RESUME."""

from __future__ import annotations

import asyncio

import discord
from discord_harness import TOKEN
from fake_discord import FakeDiscord


async def test_raw_client_logs_in_receives_events_and_sends(fake_discord: FakeDiscord) -> None:
    guild = fake_discord.add_guild()
    channel = fake_discord.text_channel(guild)
    seen: asyncio.Queue[discord.Message] = asyncio.Queue()
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    ready = asyncio.Event()

    @client.event
    async def on_ready() -> None:
        ready.set()

    @client.event
    async def on_message(message: discord.Message) -> None:
        await seen.put(message)

    async with client:
        runner = asyncio.create_task(client.start(TOKEN))
        await asyncio.wait_for(ready.wait(), 5)
        assert client.user is not None and str(client.user.id) == fake_discord.bot_user["id"]
        assert client.get_guild(int(guild["id"])) is not None
        assert fake_discord.identify_payloads[0]["intents"] == discord.Intents.default().value

        alice = fake_discord.make_user("alice")
        await fake_discord.user_message(channel, alice, "hello there")
        message = await asyncio.wait_for(seen.get(), 5)
        assert message.content == "hello there" and message.guild is not None

        sent = await message.channel.send("hi", allowed_mentions=discord.AllowedMentions.none())
        await sent.edit(content="hi again")
        thread = await sent.create_thread(name="a thread")
        assert fake_discord.bot_messages(channel["id"])[0]["content"] == "hi again"
        assert fake_discord.threads_of(channel["id"])[0]["id"] == str(thread.id)

        await fake_discord.send_reconnect()
        await fake_discord.wait_until(lambda: fake_discord.resumes)
        assert fake_discord.resumes[0]["session_id"] == "fake-session"
        await fake_discord.user_message(channel, alice, "after resume")
        while (message := await asyncio.wait_for(seen.get(), 5)).content != "after resume":
            pass

        await client.close()
        await runner
