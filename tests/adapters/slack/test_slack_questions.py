"""Questions over Socket Mode through the real Bolt app: /ask, mentions, threads, duplicates."""

from __future__ import annotations

import time

import pytest
from fake_slack import CHANNEL, USER, FakeSlack, app_mention, event_callback, slash_command
from fake_slack_core import FakeCore, StartAdapter

from adapters.slack import SlackAdapter
from bot.jobs import JobKind
from bot.replies import APOLOGY
from rag.types import Answer, Citation


def cited_answer(text: str = "Refunds take 14 days.") -> Answer:
    return Answer(
        text=text,
        citations=[Citation("policy.pdf", 13, "14 days"), Citation("policy.pdf", 14, "refund")],
        retrieved=[],
        abstained=False,
    )


async def test_ask_is_acked_then_queued_in_its_message_and_answered_by_edits_with_citations(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    started = time.monotonic()
    envelope = await fake_slack.send_envelope(
        "slash_commands", slash_command(fake_slack, "/ask", "how long do refunds take?")
    )
    await fake_slack.wait_ack(envelope, within=3.0)
    assert time.monotonic() - started < 3.0

    job = await core.next_job()
    assert job.kind is JobKind.QUESTION
    assert job.text == "how long do refunds take?"
    assert job.collection == "slack-T0TEAM"
    assert job.idempotency_key.startswith("command:")
    # The answer's message was posted before the job was queued: its ts is the thread.
    root = fake_slack.messages[(CHANNEL, job.thread)]
    assert root.thread_ts is None
    assert f"<@{USER}> asked" in root.text
    await fake_slack.wait_for(lambda: "position 1" in root.text)  # the queue position

    await adapter.post_status(job, "searching the documents…")
    await adapter.stream_partial(job, "Refunds take")
    await adapter.stream_partial(job, "Refunds take 14")
    await adapter.post_answer(job, cited_answer())

    assert root.edits >= 3
    assert "Refunds take 14 days." in root.text
    assert "[policy.pdf p.13] [policy.pdf p.14]" in root.text
    assert root.text.startswith(f"<@{USER}> asked")
    assert fake_slack.thread(CHANNEL, job.thread) == [root]  # one message, edited in place


async def test_mention_is_answered_in_its_thread_and_follow_ups_share_the_thread(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    first = app_mention("what is the refund window?", ts="1700000000.000100")
    await fake_slack.send_envelope("events_api", event_callback(first))
    job = await core.next_job()
    assert job.text == "what is the refund window?"  # the bot's mention is dropped
    assert job.thread == "1700000000.000100"
    await adapter.post_answer(job, cited_answer())
    replies = fake_slack.thread(CHANNEL, "1700000000.000100")
    assert len(replies) == 1 and replies[0].thread_ts == "1700000000.000100"
    assert "[policy.pdf p.13]" in replies[0].text

    follow_up = app_mention(
        "and for digital goods?", ts="1700000000.000200", thread_ts="1700000000.000100"
    )
    await fake_slack.send_envelope("events_api", event_callback(follow_up))
    second = await core.next_job()
    assert (second.channel, second.thread) == (job.channel, job.thread)
    assert second.message_id == "1700000000.000200"
    await adapter.post_answer(second, cited_answer("Digital goods are not refunded."))
    texts = [m.text for m in fake_slack.thread(CHANNEL, "1700000000.000100")]
    assert any("Digital goods" in t for t in texts)
    assert all(m.thread_ts == "1700000000.000100" for m in fake_slack.messages.values())


async def test_the_same_event_delivered_twice_gets_one_answer(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    payload = event_callback(app_mention("is there a warranty?"), event_id="Ev0DUPLICATE")
    first = await fake_slack.send_envelope("events_api", payload)
    await fake_slack.wait_ack(first)
    retry = await fake_slack.send_envelope("events_api", payload, retry_attempt=1)
    await fake_slack.wait_ack(retry)
    job = await core.next_job()
    await adapter.post_answer(job, cited_answer())
    # A last request, to be sure the retry's listener has finished before counting.
    await fake_slack.send_envelope("events_api", event_callback(app_mention("hello?")))
    await core.next_job()
    assert [j.idempotency_key for j in core.jobs].count("event:Ev0DUPLICATE") == 1
    assert core.pending() == 0


async def test_a_redelivery_after_restart_is_stopped_by_the_core_key(
    start_adapter: StartAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    payload = event_callback(app_mention("is there a warranty?"), event_id="Ev0AGAIN")
    first = await start_adapter()
    await fake_slack.wait_for(lambda: fake_slack.ws_connections == 1)
    await fake_slack.send_envelope("events_api", payload)
    job = await core.next_job()
    await first.post_answer(job, cited_answer())
    posts = len(fake_slack.calls_to("chat.postMessage"))
    await fake_slack.wait_for(fake_slack.all_acked)
    await first.stop()

    await start_adapter()  # a new process: its in-memory set is empty, the core remembers
    await fake_slack.wait_for(lambda: fake_slack.ws_connections == 2)
    envelope = await fake_slack.send_envelope("events_api", payload, retry_attempt=2)
    await fake_slack.wait_ack(envelope)
    await fake_slack.send_envelope("events_api", event_callback(app_mention("marker")))
    marker = await core.next_job()
    assert marker.text == "marker"
    assert len(core.jobs) == 2
    await fake_slack.wait_for(lambda: len(fake_slack.calls_to("chat.postMessage")) > posts)
    later = fake_slack.calls_to("chat.postMessage")[posts:]
    assert [c.params["thread_ts"] for c in later] == [marker.thread]  # only the marker's


async def test_duplicate_slash_command_trigger_is_acked_without_a_second_answer(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    payload = slash_command(fake_slack, "/ask", "what is covered?", trigger_id="1.2.same")
    first = await fake_slack.send_envelope("slash_commands", payload)
    await fake_slack.wait_ack(first)
    await core.next_job()
    again = await fake_slack.send_envelope("slash_commands", payload)
    assert "text" not in ((await fake_slack.wait_ack(again)).get("payload") or {})
    # A last command, to be sure the retry's listener has finished before counting.
    await fake_slack.send_envelope("slash_commands", slash_command(fake_slack, "/ask", "marker"))
    assert (await core.next_job()).text == "marker"
    assert [j.text for j in core.jobs] == ["what is covered?", "marker"]
    assert len(fake_slack.calls_to("chat.postMessage")) == 2


async def test_queue_full_is_told_privately_and_nothing_stays_posted(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    core.full = True
    envelope = await fake_slack.send_envelope(
        "slash_commands", slash_command(fake_slack, "/ask", "anything?")
    )
    await fake_slack.wait_ack(envelope)
    [post] = await fake_slack.wait_for(lambda: fake_slack.response_url_posts)
    assert "queue is full" in post["text"] and post["response_type"] == "ephemeral"
    await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.delete"))
    assert len(fake_slack.calls_to("chat.delete")) == 1
    assert fake_slack.messages == {}


async def test_direct_messages_are_questions_and_channel_chatter_is_not(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    chatter = app_mention("lunch?") | {
        "type": "message",
        "text": "lunch?",
        "channel_type": "channel",
    }
    await fake_slack.wait_ack(await fake_slack.send_envelope("events_api", event_callback(chatter)))
    dm = app_mention("what is covered?", channel="D0DM") | {
        "type": "message",
        "text": "what is covered?",
        "channel_type": "im",
    }
    await fake_slack.send_envelope("events_api", event_callback(dm))
    job = await core.next_job()
    assert (job.text, job.channel, job.thread) == ("what is covered?", "D0DM", "")
    assert len(core.jobs) == 1
    await adapter.post_answer(job, cited_answer())
    [reply] = [m for m in fake_slack.messages.values() if m.channel == "D0DM"]
    assert reply.thread_ts is None and "[policy.pdf p.13]" in reply.text


async def test_an_unexpected_failure_gets_an_apology_not_silence(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore, caplog: pytest.LogCaptureFixture
) -> None:
    core.broken = RuntimeError("disk I/O error")
    for command in ("/ask", "/docs"):
        text = "anything?" if command == "/ask" else ""
        await fake_slack.send_envelope("slash_commands", slash_command(fake_slack, command, text))
        [post] = await fake_slack.wait_for(lambda: fake_slack.response_url_posts)
        assert post["text"] == f":warning: {APOLOGY}" and post["response_type"] == "ephemeral"
        fake_slack.response_url_posts.clear()
    assert fake_slack.messages == {}  # the /ask message was taken back

    mention = app_mention("hello?")
    await fake_slack.send_envelope("events_api", event_callback(mention))
    [reply] = await fake_slack.wait_for(lambda: fake_slack.thread(CHANNEL, mention["ts"]))
    assert reply.text == f":warning: {APOLOGY}"
    assert "disk I/O error" in caplog.text  # the details go to the log, not to Slack
