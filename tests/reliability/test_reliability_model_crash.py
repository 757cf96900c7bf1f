"""A question that kills the model's process (a real SIGSEGV, as the AMX kernels of issue 12 did)
costs that one answer, never the bot: the Discord and Slack connections stay up, the asker gets
one line after a single retry, the next question is answered by a fresh model process, and a
restart replays nothing.

Real parts: the engine (SQLite, FAISS, the embedded MiniLM, a generated PDF), the BotCore with its
SQLite queue, discord.py and slack-bolt against the fake Discord and fake Slack on loopback, and
the model child process. Only the model inside the child is scripted (tests/scripted_generator.py):
it streams a reply, or kills its own process when the prompt names the volcano.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pdfs
import pytest
from fake_discord import FakeDiscord
from fake_slack import APP_TOKEN, BOT_TOKEN, TEAM_ID, FakeSlack, app_mention, event_callback
from load_support import discord_py_pointed_at
from scripted_generator import ScriptedGenerator

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.settings import DiscordSettings
from adapters.slack import SlackAdapter, SlackSettings
from bot.core import BotCore, CoreOptions
from rag.engine import RagEngine
from rag.factory import build_engine
from rag.generate_isolated import IsolatedGenerator

pytestmark = pytest.mark.slow

# The model's child dies when its prompt says "volcano": only the poisonous question does (the
# document never does, so no other prompt can).
PAGES = [
    "The island observatory watches the north ridge of the island. Its instruments record "
    "ground tremors every minute and send them to the mainland.",
    "The ferry to the observatory leaves Pier 4 at eight in the morning. Visitors must book a "
    "seat two days ahead at the harbour office.",
]
POISON = "What do the observatory instruments on the volcano record every minute?"
SAFE = "When does the ferry to the observatory leave Pier 4?"
CRASH_LINE = "The model crashed on this question (killed by SIGSEGV)"
ANSWER_WITHIN_S = 90.0


@dataclass
class Bot:
    core: BotCore
    discord_adapter: DiscordAdapter
    slack_adapter: SlackAdapter


@dataclass
class World:
    discord: FakeDiscord
    slack: FakeSlack
    channel: dict[str, Any]
    engine: RagEngine
    db_path: Path


@pytest.fixture
async def world(tmp_path: Path, reliability_settings: Any) -> AsyncIterator[World]:
    settings = reliability_settings(tmp_path / "data", generator={"answer_mode": "hybrid"})
    model = functools.partial(
        ScriptedGenerator, "I don't know.", crash_word="volcano", word_delay_s=0.01
    )
    engine = build_engine(settings, generator=lambda: IsolatedGenerator(model))
    discord, slack = FakeDiscord(), FakeSlack()
    await discord.start()
    await slack.start()
    guild = discord.add_guild()
    for collection in (f"discord-{guild['id']}", f"slack-{TEAM_ID}"):
        report = await asyncio.to_thread(
            engine.ingest_bytes, "observatory.pdf", pdfs.make_pdf(PAGES), collection=collection
        )
        assert report.outcomes[0].status == "added"
    try:
        with discord_py_pointed_at(discord):
            yield World(discord, slack, discord.text_channel(guild), engine, settings.bot_db)
    finally:
        await asyncio.to_thread(engine.close)
        await slack.stop()
        await discord.close()


async def start_bot(world: World) -> Bot:
    core = BotCore(world.engine, world.db_path, CoreOptions(edit_interval_s=0.2))
    discord_adapter = DiscordAdapter(core, DiscordSettings(edit_interval_s=0.2), token="fake-token")
    slack_adapter = SlackAdapter(
        core, SlackSettings(api_base_url=world.slack.api_url, edit_interval_s=0.2),
        bot_token=BOT_TOKEN, app_token=APP_TOKEN,
    )
    core.register(discord_adapter)
    core.register(slack_adapter)
    await core.start()
    await discord_adapter.start()
    await slack_adapter.start()
    await asyncio.wait_for(world.discord.ready.wait(), 10)
    await world.slack.wait_for(lambda: world.slack.ws_connections >= 1)
    return Bot(core, discord_adapter, slack_adapter)


async def stop_bot(bot: Bot) -> None:
    await bot.slack_adapter.stop()
    await bot.discord_adapter.stop()
    await bot.core.stop()


def discord_replies(world: World) -> list[str]:
    channel_id = world.channel["id"]
    threads = world.discord.threads_of(channel_id)
    messages = world.discord.bot_messages(channel_id)
    for thread in threads:
        messages += world.discord.bot_messages(thread["id"])
    return [str(m.get("content", "")) for m in messages]


def slack_replies(world: World, ts: str) -> list[str]:
    return [m.text for m in world.slack.messages.values() if ts in (m.thread_ts, m.ts)]


async def ask_discord(world: World, text: str) -> None:
    user = world.discord.make_user("keeper")
    me = world.discord.bot_user
    await world.discord.user_message(world.channel, user, f"<@{me['id']}> {text}", mentions=[me])


async def ask_slack(world: World, text: str) -> str:
    mention = app_mention(text)
    await world.slack.send_envelope("events_api", event_callback(mention))
    return str(mention["ts"])


async def test_a_question_that_segfaults_the_model_costs_one_answer_not_the_bot(
    world: World,
) -> None:
    bot = await start_bot(world)
    try:
        await ask_discord(world, POISON)
        poison_ts = await ask_slack(world, POISON)
        await world.discord.wait_until(
            lambda: any(CRASH_LINE in text for text in discord_replies(world)), ANSWER_WITHIN_S
        )
        await world.slack.wait_for(
            lambda: any(CRASH_LINE in text for text in slack_replies(world, poison_ts)),
            ANSWER_WITHIN_S,
        )
        # Both platforms stayed connected through four model crashes (two per question).
        assert len(world.discord.identify_payloads) == 1
        assert world.slack.ws_connections == 1

        await ask_discord(world, SAFE)
        safe_ts = await ask_slack(world, SAFE)
        await world.discord.wait_until(
            lambda: any("observatory.pdf p.2" in text for text in discord_replies(world)),
            ANSWER_WITHIN_S,
        )
        await world.slack.wait_for(
            lambda: any("observatory.pdf p.2" in text for text in slack_replies(world, safe_ts)),
            ANSWER_WITHIN_S,
        )
    finally:
        await stop_bot(bot)

    with sqlite3.connect(world.db_path) as db:
        jobs = db.execute("SELECT text, status, crashes, attempts FROM jobs ORDER BY id").fetchall()
        history = db.execute("SELECT question, status, error FROM history ORDER BY id").fetchall()
    poisoned = [(status, crashes, attempts) for text, status, crashes, attempts in jobs
                if text == POISON]
    assert poisoned == [("failed", 1, 2)] * 2  # one retry each, then the line; never a loop
    assert [status for text, status, _, _ in jobs if text == SAFE] == ["done", "done"]
    assert sorted((q, s) for q, s, _ in history) == sorted(
        [(POISON, "failed")] * 2 + [(SAFE, "done")] * 2
    )
    assert all(CRASH_LINE in error for q, _, error in history if q == POISON)

    before = (discord_replies(world), slack_replies(world, poison_ts))
    sent_before = len(world.discord.sending_requests()) + len(world.slack.calls_to("chat.update"))
    restarted = await start_bot(world)
    try:
        await asyncio.sleep(3.0)  # anything replayed would be posted by now
    finally:
        await stop_bot(restarted)
    assert (discord_replies(world), slack_replies(world, poison_ts)) == before
    assert len(world.discord.sending_requests()) + len(world.slack.calls_to("chat.update")) == \
        sent_before
