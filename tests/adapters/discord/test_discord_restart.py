"""A job acknowledged by one process and answered by another (a restart, or a second node on the
same queue): the real discord.py client and the real BotCore on one SQLite file, against the fake
Discord.

The first node posts the "Queued…" status and starts on the answer; it stops (the job goes back in
the queue); a second node, a new core and a new adapter on the same file, answers by editing that
same message through the channel, and posts a new one only where it cannot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from discord_harness import TOKEN, Bot, assert_no_mentions_anywhere
from fake_discord import EVERYONE_PERMISSIONS, MANAGE_GUILD, FakeDiscord
from fakes import FakeEngine

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.settings import DiscordSettings
from bot.core import BotCore, CoreOptions
from bot.jobs import JobStatus

Json = dict[str, Any]
Node = tuple[BotCore, DiscordAdapter]
StartNode = Callable[[FakeEngine], Awaitable[Node]]
ANSWER = "Refunds take 14 days."


@pytest.fixture
def guild(fake_discord: FakeDiscord) -> Json:
    return fake_discord.add_guild()


@pytest.fixture
async def start_node(fake_discord: FakeDiscord, tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start a core and its Discord adapter on the test's one bot database (one node, or one life
    of a restarted process); whatever is still running is stopped at teardown."""
    running: list[Node] = []

    async def start(engine: FakeEngine) -> Node:
        options = CoreOptions(edit_interval_s=0.0, stop_grace_s=0.2, cancel_wait_s=2.0)
        core = BotCore(engine, tmp_path / "bot.sqlite", options)
        adapter = DiscordAdapter(core, DiscordSettings(edit_interval_s=0.2), token=TOKEN)
        core.register(adapter)
        await core.start()
        fake_discord.ready.clear()
        await adapter.start()
        await asyncio.wait_for(fake_discord.ready.wait(), 5)
        running.append((core, adapter))
        return core, adapter

    yield start
    for core, adapter in reversed(running):
        await adapter.stop()
        await core.stop()
    assert_no_mentions_anywhere(fake_discord)


async def stop_node(node: Node) -> None:
    """A graceful stop, as on SIGTERM: the job being answered goes back in the queue."""
    core, adapter = node
    await adapter.stop()
    await core.stop()


async def first_node_starts_answering(
    fake: FakeDiscord, guild: Json, start_node: StartNode
) -> tuple[Node, Json, Json]:
    """@Folio asks in the guild's channel; the first node opens a thread, posts "Queued…" in it
    and starts on the answer (its engine is held). Returns the node, the thread and that message."""
    engine = FakeEngine()
    engine.hold()  # never released: this node stops mid-answer
    node = await start_node(engine)
    alice, me = fake.make_user("alice"), fake.bot_user
    channel = fake.text_channel(guild)
    question = await fake.user_message(
        channel, alice, f"<@{me['id']}> how long do refunds take?", mentions=[me]
    )

    def searching() -> Json | None:
        thread = fake.channels.get(int(question["id"]))
        messages = fake.bot_messages(thread["id"]) if thread else []
        return next((m for m in messages if m["content"].startswith("Searching")), None)

    status = await fake.wait_until(searching)
    return node, fake.channels[int(question["id"])], status


async def test_after_a_restart_the_answer_edits_the_status_message_of_the_first_life(
    fake_discord: FakeDiscord, guild: Json, start_node: StartNode
) -> None:
    first, thread, status = await first_node_starts_answering(fake_discord, guild, start_node)
    stored = await first[0].job(1)
    assert stored is not None and stored.status is JobStatus.RUNNING
    assert stored.reply_to["message_id"] == status["id"]  # recorded when "Queued…" was posted
    assert stored.reply_to["message_channel_id"] == thread["id"]
    posts = len(fake_discord.bot_requests("POST", "/messages"))
    await stop_node(first)

    engine = FakeEngine()
    engine.enqueue(ANSWER)
    second, _ = await start_node(engine)
    final = await fake_discord.wait_until(
        lambda: next(
            (m for m in fake_discord.bot_messages(thread["id"]) if "Sources:" in m["content"]),
            None,
        )
    )
    assert final["id"] == status["id"]  # the same message, edited
    assert final["content"].startswith(ANSWER)
    assert final["flags"] & 4  # link previews stay suppressed
    assert [m["id"] for m in fake_discord.bot_messages(thread["id"])] == [status["id"]]
    assert len(fake_discord.bot_requests("POST", "/messages")) == posts  # nothing new posted
    assert [c.question for c in engine.calls] == ["how long do refunds take?"]
    done = await second.job(1)
    assert done is not None and done.status is JobStatus.DONE and done.attempts == 2


async def test_a_status_message_deleted_before_the_restart_is_replaced_by_one_new_message(
    fake_discord: FakeDiscord, guild: Json, start_node: StartNode
) -> None:
    first, thread, status = await first_node_starts_answering(fake_discord, guild, start_node)
    await stop_node(first)
    del fake_discord.messages[int(thread["id"])][int(status["id"])]  # deleted while Folio was down

    engine = FakeEngine()
    engine.enqueue(ANSWER)
    second, _ = await start_node(engine)
    final = await fake_discord.wait_until(
        lambda: next(
            (m for m in fake_discord.bot_messages(thread["id"]) if "Sources:" in m["content"]),
            None,
        )
    )
    assert final["id"] != status["id"] and final["content"].startswith(ANSWER)
    assert [m["id"] for m in fake_discord.bot_messages(thread["id"])] == [final["id"]]
    stored = await second.job(1)
    assert stored is not None and stored.reply_to["message_id"] == final["id"]  # the new one


async def test_an_ask_whose_interaction_belonged_to_the_first_life_is_answered_in_its_channel(
    fake_discord: FakeDiscord, guild: Json, start_node: StartNode
) -> None:
    """The interaction's token is gone with the first process. Its response is edited through
    the channel where Discord allows that; where it does not (the fake refuses, as Discord does
    for an interaction's response in some places), the answer comes as a channel message that
    says whom it is for."""
    engine = FakeEngine()
    engine.hold()
    first = await start_node(engine)
    alice = fake_discord.make_user("alice")
    channel = fake_discord.text_channel(guild)
    option = {"name": "question", "type": 3, "value": "how long do refunds take?"}
    record = await fake_discord.slash_command(channel, alice, "ask", [option])
    await fake_discord.wait_until(
        lambda: record.original is not None and record.original["content"].startswith("Searching")
    )
    assert record.original is not None
    stored = await first[0].job(1)
    assert stored is not None and stored.reply_to["message_id"] == record.original["id"]
    await stop_node(first)

    engine = FakeEngine()
    engine.enqueue(ANSWER)
    await start_node(engine)
    answer = await fake_discord.wait_until(
        lambda: next(
            (m for m in fake_discord.bot_messages(channel["id"]) if "Sources:" in m["content"]),
            None,
        )
    )
    header, *rest = fake_discord.bot_messages(channel["id"])
    assert header["content"] == f"<@{alice['id']}> asked: how long do refunds take?"
    assert rest == [answer] and answer["content"].startswith(ANSWER)


async def test_what_is_stored_a_public_message_but_never_an_ephemeral_one(bot: Bot) -> None:
    """A public response is stored once (its edits change nothing); an admin command's private
    response is not: only its interaction's token, gone with this process, could edit it."""
    option = {"name": "question", "type": 3, "value": "refund window?"}
    asked = await bot.fake.slash_command(bot.channel, bot.alice, "ask", [option])
    await bot.core.wait_finished()
    assert asked.original is not None
    assert bot.core.remembered == [
        (1, {"message_id": asked.original["id"], "message_channel_id": bot.channel["id"]})
    ]
    forget = {"name": "name", "type": 3, "value": "guide.pdf"}
    done = await bot.fake.slash_command(
        bot.channel, bot.boss, "forget", [forget], roles=[bot.admin_role],
        permissions=EVERYONE_PERMISSIONS | MANAGE_GUILD,
    )
    await bot.core.wait_finished(2)
    assert done.original and done.original["content"] == "Forgot guide.pdf."
    assert done.original["flags"] & 64  # ephemeral
    assert len(bot.core.remembered) == 1
