"""Faults (issue 8): a platform that answers 429s and 5xx for a while. Questions asked during the
storm are answered after it, each exactly once: delayed, never lost, never duplicated.

The real BotCore (SQLite queue, worker) with the scripted FakeEngine, and the real discord.py and
slack-bolt adapters, against the fake Discord and fake Slack on loopback. Both fakes refuse every
message post and edit for STORM_S seconds — 429 with Retry-After (and Discord's rate-limit JSON
and headers), 500, 502 and 503 in turn — without acting on them, then recover. Counting is done
on the fakes' side by the load test's ledger.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_discord import InteractionRecord
from fake_slack import APP_TOKEN, BOT_TOKEN, app_mention, event_callback, slash_command
from fakes import FakeEngine
from load_support import (
    Ledger,
    LedgerDiscord,
    LedgerSlack,
    Question,
    discord_py_pointed_at,
    question_rows,
)

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.settings import DiscordSettings
from adapters.slack import SlackAdapter, SlackSettings
from bot.core import BotCore, CoreOptions

STORM_S = 25.0
STATUSES = (429, 500, 502, 503)
ANSWER_WITHIN_S = 120.0


@dataclass
class Platforms:
    ledger: Ledger
    discord: LedgerDiscord
    slack: LedgerSlack
    channel: dict[str, Any]
    engine: FakeEngine


@pytest.fixture
async def platforms(tmp_path: Path) -> AsyncIterator[Platforms]:
    ledger = Ledger()
    discord, slack = LedgerDiscord(ledger), LedgerSlack(ledger)
    await discord.start()
    await slack.start()
    guild = discord.add_guild()
    engine = FakeEngine(token_delay_s=0.02)  # answers stream: partial edits hit the storm too
    core = BotCore(engine, tmp_path / "bot.sqlite", CoreOptions(edit_interval_s=0.2))
    with discord_py_pointed_at(discord):
        discord_adapter = DiscordAdapter(
            core, DiscordSettings(edit_interval_s=0.2), token="fake-token"
        )
        slack_adapter = SlackAdapter(
            core,
            SlackSettings(api_base_url=slack.api_url, edit_interval_s=0.2),
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
        )
        core.register(discord_adapter)
        core.register(slack_adapter)
        await core.start()
        try:
            await discord_adapter.start()
            await asyncio.wait_for(discord.ready.wait(), 10)
            await slack_adapter.start()
            await slack.wait_for(lambda: slack.ws_connections >= 1)
            yield Platforms(ledger, discord, slack, discord.text_channel(guild), engine)
        finally:
            await slack_adapter.stop()
            await discord_adapter.stop()
            await core.stop()
            await slack.stop()
            await discord.close()


async def test_questions_asked_in_a_429_and_5xx_storm_are_answered_once_after_it(
    platforms: Platforms,
) -> None:
    ledger, discord, slack = platforms.ledger, platforms.discord, platforms.slack
    ids = itertools.count(1)
    users = [discord.make_user(f"sailor{n}") for n in range(4)]
    for n in range(4):
        slack.add_user(f"U0STORM{n}")

    gate = platforms.engine.hold()  # the answers are ready only once the storm is raging
    discord.storm(STORM_S, STATUSES)
    slack.storm(STORM_S, STATUSES)
    storm_ends = time.monotonic() + STORM_S
    asked: list[Question] = []
    records: dict[int, InteractionRecord] = {}
    for n, user in enumerate(users):
        text = f"what does sailor {n} need to know?"
        via = "ask" if n % 2 == 0 else "mention"
        question = ledger.add(
            Question(next(ids), "discord", via, str(user["id"]), text),
            LedgerDiscord.key(str(user["id"]), text),
        )
        ledger.sent(question)
        if via == "ask":
            option = {"name": "question", "type": 3, "value": text}
            records[question.qid] = await discord.slash_command(
                platforms.channel, user, "ask", [option]
            )
        else:
            me = discord.bot_user
            await discord.user_message(
                platforms.channel, user, f"<@{me['id']}> {text}", mentions=[me]
            )
        asked.append(question)
    for n in range(4):
        user_id, text = f"U0STORM{n}", f"what does crew {n} need to know?"
        question = ledger.add(
            Question(next(ids), "slack", "ask" if n % 2 == 0 else "mention", user_id, text)
        )
        if question.via == "ask":
            payload = slash_command(slack, "/ask", text, user=user_id)
            ledger.bind(LedgerSlack.header_key(user_id, text), question.qid)
            ledger.bind(LedgerSlack.response_key(payload["response_url"]), question.qid)
            ledger.sent(question)
            await slack.send_envelope("slash_commands", payload)
        else:
            ts = f"1700000000.{question.qid:06d}"
            ledger.bind(LedgerSlack.thread_key(ts), question.qid)
            ledger.sent(question)
            await slack.send_envelope(
                "events_api", event_callback(app_mention(text, user=user_id, ts=ts))
            )
        asked.append(question)
    await asyncio.sleep(1.0)
    gate.set()  # every final reply now meets the storm first
    assert time.monotonic() < storm_ends - 2.0, "the questions must be asked during the storm"

    answered = await asyncio.gather(*(ledger.wait(q.qid, ANSWER_WITHIN_S) for q in asked))
    await asyncio.sleep(2.0)  # a late duplicate (a retried post) would arrive now
    rows = question_rows(ledger)
    assert all(answered), [(r["platform"], r["via"], r["last_text"]) for r in rows]

    # The storm really refused message writes on both platforms, with every status.
    assert {status for _, _, status in discord.storm_replies} == set(STATUSES)
    assert {status for _, status in slack.storm_replies} == set(STATUSES)
    # Exactly one final message per question (the right answer), none unattributed or refused.
    assert [len(q.final_messages) for q in asked] == [1] * len(asked), rows
    assert ledger.unattributed_finals == []
    assert not any(q.refused for q in asked)
    for question in asked:
        assert question.sent_at is not None and question.answered_s is not None
        assert question.sent_at + question.answered_s >= storm_ends - 0.05  # after the storm
        assert question.text in question.final_texts[0]
    assert len(platforms.engine.calls) == len(asked)  # each question ran once
    # A slash command's answer fills its deferred response ("thinking…" does not stay).
    for qid, record in records.items():
        assert record.original is not None
        assert ledger.questions[qid].final_messages == {f"discord-message:{record.original['id']}"}
        assert not record.original["flags"] & 128, record.original  # no longer loading


@pytest.mark.parametrize("platform", ["discord", "slack"])
async def test_a_final_reply_refused_with_a_5xx_is_sent_once_the_platform_recovers(
    platforms: Platforms, platform: str
) -> None:
    """A 5xx the chat libraries never retry (discord.py's HTTP client: 503, slack_sdk: 502) on
    the answer itself: before adapters.retry, the core logged the failure and the answer was
    lost."""
    ledger, discord, slack = platforms.ledger, platforms.discord, platforms.slack
    gate = platforms.engine.hold()
    text = "what is on the manifest?"
    if platform == "discord":
        # a mention: its replies go through discord.py's HTTP client, which never retries a 503
        # (interaction webhooks retry every 5xx for 25 s by themselves)
        user = discord.make_user("purser")
        question = ledger.add(
            Question(1, "discord", "mention", str(user["id"]), text),
            LedgerDiscord.key(str(user["id"]), text),
        )
        ledger.sent(question)
        me = discord.bot_user
        await discord.user_message(platforms.channel, user, f"<@{me['id']}> {text}", mentions=[me])
        await discord.wait_until(lambda: question.first_reply_s is not None)
        discord.storm(3.0, (503,), paths=("/channels/",))
    else:
        slack.add_user("U0PURSER")
        question = ledger.add(
            Question(1, "slack", "mention", "U0PURSER", text), LedgerSlack.thread_key("1.000001")
        )
        ledger.sent(question)
        event = app_mention(text, user="U0PURSER", ts="1.000001")
        await slack.send_envelope("events_api", event_callback(event))
        await slack.wait_for(lambda: question.first_reply_s is not None)
        slack.storm(3.0, (502,), methods=("chat.update",))
    storm_ends = time.monotonic() + 3.0
    gate.set()

    assert await ledger.wait(question.qid, 30.0), question.last_text
    await asyncio.sleep(1.0)
    refused = discord.storm_replies if platform == "discord" else slack.storm_replies
    assert refused, "the answer met the outage"
    assert time.monotonic() >= storm_ends
    assert len(question.final_messages) == 1 and len(question.final_texts) == 1, question
    assert text in question.final_texts[0]
