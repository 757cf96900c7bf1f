"""A job acknowledged by one process and answered by another (a restart, or a second node on the
same queue): the real Bolt app and the real BotCore on one SQLite file, against the fake Slack.

The first node posts the "Queued…" status and starts writing; it stops (the job goes back in the
queue); a second node, a new core and a new adapter on the same file, answers the job by editing
that same message, and posts a new one only if the message was deleted meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from fake_slack import (
    APP_TOKEN,
    BOT_TOKEN,
    CHANNEL,
    FakeSlack,
    Message,
    app_mention,
    event_callback,
)
from fakes import FakeEngine

from adapters.slack import SlackAdapter, SlackSettings
from bot.core import BotCore, CoreOptions
from bot.jobs import JobStatus

CITED = "[slack-T0TEAM.pdf p.3]"  # what FakeEngine cites for a scripted text answer

StartNode = Callable[[FakeEngine], Awaitable[tuple[BotCore, SlackAdapter]]]


@pytest.fixture
async def start_node(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start a core and its Slack adapter on the test's one bot database (one node, or one life
    of a restarted process); whatever is still running is stopped at teardown."""
    running: list[tuple[BotCore, SlackAdapter]] = []

    async def start(engine: FakeEngine) -> tuple[BotCore, SlackAdapter]:
        options = CoreOptions(edit_interval_s=0.0, stop_grace_s=0.2, cancel_wait_s=2.0)
        core = BotCore(engine, tmp_path / "bot.sqlite", options)
        settings = SlackSettings.model_validate(
            {"api_base_url": fake_slack.api_url, "edit_interval_s": 0.0}
        )
        adapter = SlackAdapter(core, settings, bot_token=BOT_TOKEN, app_token=APP_TOKEN)
        core.register(adapter)
        await core.start()
        await adapter.start()
        running.append((core, adapter))
        return core, adapter

    yield start
    for core, adapter in reversed(running):
        await adapter.stop()
        await core.stop()


async def stop_node(node: tuple[BotCore, SlackAdapter]) -> None:
    """A graceful stop, as on SIGTERM: the job being written goes back in the queue."""
    core, adapter = node
    await adapter.stop()
    await core.stop()


def bot_messages(fake: FakeSlack, thread_ts: str) -> list[Message]:
    """What Folio posted in the thread (the fake keeps only the bot's messages)."""
    return fake.thread(CHANNEL, thread_ts)


async def first_node_writes(
    fake: FakeSlack, start_node: StartNode
) -> tuple[tuple[BotCore, SlackAdapter], str, Message, int]:
    """Ask in a thread; the first node acknowledges and starts on it (its engine is held)."""
    engine = FakeEngine()
    engine.hold()  # never released: this node stops mid-answer
    node = await start_node(engine)
    await fake.wait_for(lambda: fake.ws_connections >= 1)
    # (its own ts: the fake numbers the bot's messages the same way as the helper's events)
    mention = app_mention("how long do refunds take?", ts="1000.000001")
    await fake.wait_ack(await fake.send_envelope("events_api", event_callback(mention)))
    status = await fake.wait_for(
        lambda: next((m for m in bot_messages(fake, mention["ts"]) if "searching" in m.text), None)
    )
    return node, mention["ts"], status, len(fake.calls_to("chat.postMessage"))


async def test_after_a_restart_the_answer_edits_the_status_message_of_the_first_life(
    fake_slack: FakeSlack, start_node: StartNode
) -> None:
    first, thread, status, posts = await first_node_writes(fake_slack, start_node)
    assert status.text.startswith("_searching")
    job_id = 1
    stored = await first[0].job(job_id)
    assert stored is not None and stored.status is JobStatus.RUNNING
    assert stored.reply_to["message_ts"] == status.ts  # recorded when "Queued…" was posted
    assert stored.reply_to["message_channel"] == CHANNEL
    await stop_node(first)

    engine = FakeEngine()
    engine.enqueue("Refunds take 14 days.")
    second, _ = await start_node(engine)
    final = await fake_slack.wait_for(
        lambda: next((m for m in bot_messages(fake_slack, thread) if CITED in m.text), None)
    )
    assert final.ts == status.ts  # the same message, edited
    assert final.text.startswith("Refunds take 14 days.")
    assert [m.ts for m in bot_messages(fake_slack, thread)] == [status.ts]  # nothing left over
    assert len(fake_slack.calls_to("chat.postMessage")) == posts  # no new message was posted
    assert {c.params["ts"] for c in fake_slack.calls_to("chat.update")} == {status.ts}
    assert [c.question for c in engine.calls] == ["how long do refunds take?"]
    done = await second.job(job_id)
    assert done is not None and done.status is JobStatus.DONE and done.attempts == 2


async def test_a_status_message_deleted_before_the_restart_is_replaced_by_one_new_message(
    fake_slack: FakeSlack, start_node: StartNode
) -> None:
    first, thread, status, posts = await first_node_writes(fake_slack, start_node)
    await stop_node(first)
    fake_slack.messages.pop((CHANNEL, status.ts))  # someone deleted it while Folio was down

    engine = FakeEngine()
    engine.enqueue("Refunds take 14 days.")
    second, _ = await start_node(engine)
    final = await fake_slack.wait_for(
        lambda: next((m for m in bot_messages(fake_slack, thread) if CITED in m.text), None)
    )
    assert final.ts != status.ts and final.thread_ts == thread
    assert [m.ts for m in bot_messages(fake_slack, thread)] == [final.ts]
    assert len(fake_slack.calls_to("chat.postMessage")) == posts + 1
    stored = await second.job(1)
    assert stored is not None and stored.reply_to["message_ts"] == final.ts  # the new one
