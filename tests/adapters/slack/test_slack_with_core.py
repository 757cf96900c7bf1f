"""End to end: the fake Slack, the real Bolt app, the real BotCore (SQLite queue, worker, history)
and the bot tests' scripted FakeEngine standing in for the models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_slack import (
    ADMIN,
    CHANNEL,
    USER,
    FakeFile,
    FakeSlack,
    app_mention,
    event_callback,
    slash_command,
    small_pdf,
)
from fakes import FakeEngine

from adapters.slack import SlackAdapter
from bot.core import BotCore, CoreOptions
from rag.types import DocumentInfo, Turn

CITED = "[slack-T0TEAM.pdf p.3]"  # what FakeEngine cites for a scripted text answer


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def core(engine: FakeEngine, tmp_path: Path) -> AsyncIterator[BotCore]:
    bot_core = BotCore(engine, tmp_path / "bot.sqlite", CoreOptions(edit_interval_s=0.0))
    await bot_core.start()
    try:
        yield bot_core
    finally:
        await bot_core.stop()


async def test_ask_then_a_follow_up_in_the_thread_carries_the_conversation(
    adapter: SlackAdapter, fake_slack: FakeSlack, engine: FakeEngine
) -> None:
    engine.enqueue("Refunds take 14 days.", "Digital goods are not refunded.")
    payload = slash_command(fake_slack, "/ask", "how long do refunds take?")
    await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", payload))

    root = await fake_slack.wait_for(
        lambda: next((m for m in fake_slack.messages.values() if CITED in m.text), None)
    )
    assert root.text.startswith(f"<@{USER}> asked: _how long do refunds take?_")
    assert "Refunds take 14 days." in root.text
    assert root.edits >= 2  # queued → searching/writing → final

    follow_up = app_mention("and for digital goods?", thread_ts=root.ts)
    await fake_slack.send_envelope("events_api", event_callback(follow_up))
    reply = await fake_slack.wait_for(
        lambda: next(
            (
                m
                for m in fake_slack.thread(CHANNEL, root.ts)
                if "Digital goods" in m.text and CITED in m.text
            ),
            None,
        )
    )
    assert reply.thread_ts == root.ts
    call = engine.calls[1]
    assert (call.question, call.collection) == ("and for digital goods?", "slack-T0TEAM")
    assert call.history == (Turn("how long do refunds take?", "Refunds take 14 days."),)


async def test_the_same_event_twice_is_answered_once_by_the_core_key(
    adapter: SlackAdapter, fake_slack: FakeSlack, engine: FakeEngine
) -> None:
    engine.enqueue("Once.", "Marker.")
    payload = event_callback(app_mention("twice?"), event_id="Ev0TWICE")
    await fake_slack.send_envelope("events_api", payload)
    await fake_slack.send_envelope("events_api", payload, retry_attempt=1)
    thread = payload["event"]["ts"]
    await fake_slack.wait_for(
        lambda: any(m.text.startswith("Once.") for m in fake_slack.thread(CHANNEL, thread))
    )
    await fake_slack.send_envelope("events_api", event_callback(app_mention("marker")))
    await fake_slack.wait_for(
        lambda: any(m.text.startswith("Marker.") for m in fake_slack.messages.values())
    )
    assert [c.question for c in engine.calls] == ["twice?", "marker"]
    assert len(fake_slack.thread(CHANNEL, thread)) == 1


async def test_an_admin_adds_a_pdf_and_the_summary_lands_in_the_thread(
    adapter: SlackAdapter, fake_slack: FakeSlack, engine: FakeEngine
) -> None:
    pdf = small_pdf()
    info = fake_slack.add_file(FakeFile("F0REAL", "guide.pdf", pdf))
    event = app_mention("add this", user=ADMIN, files=[info])
    await fake_slack.send_envelope("events_api", event_callback(event))
    summary = await fake_slack.wait_for(
        lambda: next(
            (m for m in fake_slack.thread(CHANNEL, event["ts"]) if "Indexed 1 of 1" in m.text),
            None,
        )
    )
    assert summary.thread_ts == event["ts"]
    assert engine.ingested == [("guide.pdf", pdf, "slack-T0TEAM")]


async def test_forget_docs_cancel_and_history_commands(
    adapter: SlackAdapter, fake_slack: FakeSlack, engine: FakeEngine
) -> None:
    engine.docs["slack-T0TEAM"] = [DocumentInfo("guide.pdf", 12, 30, "ab", "2026-01-01T00:00:00Z")]

    async def private_reply(command: str, text: str, user: str = USER) -> str:
        before = len(fake_slack.response_url_posts)
        await fake_slack.send_envelope(
            "slash_commands", slash_command(fake_slack, command, text, user=user)
        )
        posts = await fake_slack.wait_for(lambda: fake_slack.response_url_posts[before:] or None)
        assert posts[0]["response_type"] == "ephemeral"
        return str(posts[0]["text"])

    assert "guide.pdf: 12 pages, 30 passages" in await private_reply("/docs", "")
    assert "Only workspace admins" in await private_reply("/forget", "guide.pdf")
    assert engine.docs["slack-T0TEAM"]
    assert "Forgot guide.pdf" in await private_reply("/forget", "guide.pdf", user=ADMIN)
    assert "No documents yet" in await private_reply("/docs", "")
    assert "no document named nothing.pdf" in await private_reply(
        "/forget", "nothing.pdf", user=ADMIN
    )
    assert "nothing queued or running" in await private_reply("/cancel", "")
    history = await private_reply("/history", "", user=ADMIN)
    assert "_guide.pdf_ → Forgot guide.pdf" in history


async def test_cancel_stops_a_running_answer_and_says_so_in_its_message(
    adapter: SlackAdapter, fake_slack: FakeSlack, engine: FakeEngine
) -> None:
    gate = engine.hold()
    payload = slash_command(fake_slack, "/ask", "a long one?")
    await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", payload))
    await fake_slack.wait_for(lambda: engine.calls)  # the engine is working on it
    await fake_slack.send_envelope("slash_commands", slash_command(fake_slack, "/cancel", ""))
    [note] = await fake_slack.wait_for(lambda: fake_slack.response_url_posts or None)
    assert note["text"] == "Cancelling _a long one?_."
    root = await fake_slack.wait_for(
        lambda: next((m for m in fake_slack.messages.values() if "Cancelled." in m.text), None)
    )
    assert root.text.startswith(f"<@{USER}> asked: _a long one?_")
    gate.set()


async def test_the_ack_comes_back_within_3_seconds_while_another_answer_generates(
    adapter: SlackAdapter, fake_slack: FakeSlack, engine: FakeEngine
) -> None:
    import time

    engine.busy = True  # the engine thread burns CPU per word, as a real model does
    engine.token_delay_s = 0.02
    engine.enqueue(" ".join(["word"] * 200), "Second answer.")  # ~4 s of busy generation
    first = slash_command(fake_slack, "/ask", "a long question")
    await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", first))
    await fake_slack.wait_for(lambda: engine.calls or None)  # the first answer is generating
    started = time.monotonic()
    second = slash_command(fake_slack, "/ask", "another question", user=ADMIN)
    await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", second))
    assert time.monotonic() - started < 3.0
    queued = await fake_slack.wait_for(
        lambda: next((m for m in fake_slack.messages.values() if "another" in m.text), None)
    )
    await fake_slack.wait_for(lambda: "position 1" in queued.text)


async def test_two_workspaces_never_share_a_collection(
    adapter: SlackAdapter, fake_slack: FakeSlack, engine: FakeEngine
) -> None:
    here = slash_command(fake_slack, "/ask", "what is the vault code?")
    there = {**slash_command(fake_slack, "/ask", "what is the vault code?"), "team_id": "T0OTHER"}
    for payload in (here, there):
        await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", payload))
    await fake_slack.wait_for(lambda: len(engine.calls) == 2 or None)
    assert sorted(call.collection for call in engine.calls) == ["slack-T0OTHER", "slack-T0TEAM"]
