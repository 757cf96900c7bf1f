"""What Folio sends to Slack: escaped document text, no unfurls, split long replies, rate limits
retried, response_url used only while Slack honours it."""

from __future__ import annotations

import time

from fake_slack import CHANNEL, FakeSlack, app_mention, event_callback, slash_command
from fake_slack_core import FakeCore

from adapters.slack import SlackAdapter
from adapters.slack.mrkdwn import escape, split_message, to_plain
from adapters.slack.outbox import ResponseUrl
from rag.types import Answer, Citation


async def ask_by_mention(
    fake_slack: FakeSlack, core: FakeCore, text: str = "q?"
) -> tuple[str, int]:
    event = app_mention(text)
    await fake_slack.send_envelope("events_api", event_callback(event))
    job = await core.next_job()
    return str(event["ts"]), job.id


async def test_document_text_cannot_notify_or_link(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    event = app_mention("who should I tell?")
    await fake_slack.send_envelope("events_api", event_callback(event))
    job = await core.next_job()
    evil = Answer(
        text="Tell <!channel> and <!here>, then see <http://evil.example|the form> & <@U0BOSS>.",
        citations=[Citation("<!everyone>.pdf", 2, "x")],
        retrieved=[],
        abstained=False,
    )
    await adapter.stream_partial(job, "Tell <!channel>")
    await adapter.post_answer(job, evil)
    texts = [c.params["text"] for c in fake_slack.calls if c.method.startswith("chat.")]
    assert texts
    for text in texts:
        for live in ("<!channel>", "<!here>", "<!everyone>", "<http://", "<@U0BOSS>"):
            assert live not in text
    [reply] = fake_slack.thread(CHANNEL, str(event["ts"]))
    assert "&lt;!channel&gt;" in reply.text
    assert "&lt;http://evil.example|the form&gt; &amp; &lt;@U0BOSS&gt;" in reply.text
    assert "[&lt;!everyone&gt;.pdf p.2]" in reply.text


async def test_every_post_turns_unfurling_off(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    await fake_slack.send_envelope("slash_commands", slash_command(fake_slack, "/ask", "a?"))
    job = await core.next_job()
    await adapter.post_answer(job, Answer("See https://example.com " * 300, [], [], False))
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) >= 2  # the root, and the overflow of the long answer in its thread
    for call in posts:
        assert call.params["unfurl_links"] is False
        assert call.params["unfurl_media"] is False


async def test_a_long_answer_is_split_under_the_limit_into_the_thread(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    thread, _ = await ask_by_mention(fake_slack, core)
    job = core.jobs[-1]
    long_text = " ".join(f"Sentence {i} is about refunds & returns." for i in range(400))
    await adapter.post_answer(job, Answer(long_text, [Citation("a.pdf", 1, "q")], [], False))
    messages = fake_slack.thread(CHANNEL, thread)
    assert len(messages) >= 5
    assert all(len(m.text) <= 3000 for m in messages)
    assert all(m.thread_ts == thread for m in messages)
    assert messages[-1].text.endswith("Sources: [a.pdf p.1]")
    joined = " ".join(m.text for m in messages)
    assert joined.count("&amp;") == 400  # no entity was cut in two


async def test_rate_limited_calls_are_retried_after_retry_after(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    fake_slack.fail("chat.postMessage", 429, {"Retry-After": "0"})
    fake_slack.fail("chat.update", 429, {"Retry-After": "0"})
    fake_slack.fail("chat.update", 503)
    thread, _ = await ask_by_mention(fake_slack, core)
    job = core.jobs[-1]
    await fake_slack.wait_for(lambda: fake_slack.thread(CHANNEL, thread))  # "queued", on retry
    await adapter.post_answer(job, Answer("Fourteen days.", [], [], False))
    [reply] = fake_slack.thread(CHANNEL, thread)
    assert reply.text == "Fourteen days."
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    assert len(fake_slack.calls_to("chat.update")) == 3


async def test_when_the_app_cannot_post_the_answer_goes_through_the_response_url(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    payload = slash_command(fake_slack, "/ask", "private?", channel="CPRIVATE1")
    await fake_slack.send_envelope("slash_commands", payload)
    job = await core.next_job()
    [note] = await fake_slack.wait_for(lambda: fake_slack.response_url_posts)
    assert "position 1" in note["text"] and "appear here" in note["text"]
    assert note["response_type"] == "ephemeral"
    await adapter.stream_partial(job, "partial text is not sent this way")
    await adapter.post_answer(job, Answer("Yes.", [Citation("p.pdf", 3, "q")], [], False))
    await fake_slack.wait_for(lambda: len(fake_slack.response_url_posts) == 2)
    post = fake_slack.response_url_posts[1]
    assert post["response_type"] == "in_channel"
    assert "Yes." in post["text"] and "[p.pdf p.3]" in post["text"]
    assert post["unfurl_links"] is False


def test_response_url_is_used_five_times_within_thirty_minutes_only() -> None:
    url = ResponseUrl("http://x", issued_at=1000.0)
    assert url.usable(now=1000.0 + 29 * 60)
    assert not url.usable(now=1000.0 + 30 * 60)
    url.uses = 5
    assert not url.usable(now=1001.0)


async def test_after_response_url_expiry_private_notes_use_post_ephemeral(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    payload = slash_command(fake_slack, "/docs", "")
    adapter.response_url(payload["response_url"], issued_at=time.time() - 31 * 60)
    await fake_slack.send_envelope("slash_commands", payload)
    [call] = await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.postEphemeral"))
    assert call.params["user"] == payload["user_id"]
    assert "No documents yet" in call.params["text"]
    assert fake_slack.response_url_posts == []


def test_mrkdwn_helpers() -> None:
    assert escape("a & <b> <!here>") == "a &amp; &lt;b&gt; &lt;!here&gt;"
    assert (
        to_plain(
            "<@U0BOT> what about <#C1|general> &amp; <https://x.io|docs>?", bot_user_id="U0BOT"
        )
        == "what about #general & docs?"
    )
    pieces = split_message("x" * 95 + " &amp;&amp;&amp;", 100)
    assert all(len(p) <= 100 for p in pieces) and "".join(pieces).count("&amp;") == 3
    assert split_message("", 100) == [""]


async def test_a_deleted_answer_message_is_posted_again(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    await fake_slack.send_envelope("events_api", event_callback(app_mention("q?")))
    job = await core.next_job()
    [queued] = await fake_slack.wait_for(lambda: list(fake_slack.messages.values()))
    del fake_slack.messages[(queued.channel, queued.ts)]  # a user deleted "Queued…"
    await adapter.post_answer(job, Answer("Still answered.", [], [], False))
    [answer] = fake_slack.messages.values()
    assert answer.text == "Still answered." and answer.thread_ts == job.thread
