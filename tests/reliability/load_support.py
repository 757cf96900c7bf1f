"""What the load and platform-storm tests share: the fake Discord and fake Slack with a ledger of
which question each bot message belongs to, the question plan, and the figures.

The ledger is kept on the fake servers' side (every message the bot posts or edits passes through
them), so "answered exactly once" is judged on what the platforms received, not on what the bot
believes it sent: a question is answered when one of its messages carries a final reply, and every
further message of the same question carrying one is a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fake_discord import FakeDiscord
from fake_slack import FakeSlack

from bot.render import ABSTAIN_TEXT

Json = dict[str, Any]

INGESTED = "Indexed "  # the start of an ingest summary (bot.render.render_ingest)
REFUSALS = ("The queue is full", "requests waiting; wait for an answer")


def is_final_answer(text: str) -> bool:
    """An answer as the user finally sees it: sources or an abstention, not a partial (" …")."""
    text = text.strip()
    if text.endswith("…"):
        return False
    return "Sources:" in text or ABSTAIN_TEXT in text


@dataclass
class Question:
    """One request sent to a fake platform, and what the platform saw of its replies."""

    qid: int
    platform: str  # "discord" | "slack"
    via: str  # "ask" (slash command) | "mention"
    user: str
    text: str
    kind: str = "question"  # or "ingest"
    asks_other_collection: bool = False
    sent_at: float | None = None
    ack_s: float | None = None  # Slack envelope ack / Discord interaction callback
    first_reply_s: float | None = None  # the first bot message of any kind for it
    answered_s: float | None = None  # the first final reply
    refused: bool = False
    final_texts: list[str] = field(default_factory=list)
    final_messages: set[str] = field(default_factory=set)
    last_text: str = ""

    def is_final(self, text: str) -> bool:
        if self.kind == "ingest":
            return text.startswith(INGESTED) or f"\n\n{INGESTED}" in text
        return is_final_answer(text)


class Ledger:
    """Questions by id, the keys that find a question from what the bot sent, and waiters."""

    def __init__(self) -> None:
        self.questions: dict[int, Question] = {}
        self._owners: dict[str, int] = {}
        self._done: dict[int, asyncio.Event] = {}
        self.unattributed_finals: list[str] = []

    def add(self, question: Question, *keys: str) -> Question:
        self.questions[question.qid] = question
        self._done[question.qid] = asyncio.Event()
        for key in keys:
            self.bind(key, question.qid)
        return question

    def bind(self, key: str, qid: int) -> None:
        self._owners[key] = qid

    def owner(self, key: str) -> int | None:
        return self._owners.get(key)

    def sent(self, question: Question) -> None:
        question.sent_at = time.monotonic()

    def wrote(self, qid: int | None, message_key: str, text: str) -> None:
        """The bot posted or edited `message_key` to `text` (for question `qid`, if known)."""
        if qid is None:
            if is_final_answer(text):
                self.unattributed_finals.append(text)
            return
        self.bind(message_key, qid)
        question = self.questions[qid]
        question.last_text = text
        elapsed = time.monotonic() - (question.sent_at or time.monotonic())
        if question.first_reply_s is None:
            question.first_reply_s = elapsed
        if question.is_final(text):
            question.final_texts.append(text)
            question.final_messages.add(message_key)
            if question.answered_s is None:
                question.answered_s = elapsed
            self._done[qid].set()
        elif any(refusal in text for refusal in REFUSALS):
            question.refused = True
            self._done[qid].set()

    def refuse(self, qid: int, text: str) -> None:
        self.questions[qid].refused = True
        self.questions[qid].last_text = text
        self._done[qid].set()

    async def wait(self, qid: int, within: float) -> bool:
        """True once the question has its final reply (or was refused) within `within` s."""
        try:
            await asyncio.wait_for(self._done[qid].wait(), within)
        except TimeoutError:
            return False
        return True

    def duplicates(self) -> int:
        extra = sum(max(0, len(q.final_messages) - 1) for q in self.questions.values())
        return extra + len(self.unattributed_finals)


# ---- the fake platforms, recording into a ledger ------------------------------------------------


def _body(response: web.StreamResponse) -> Json:
    if isinstance(response, web.Response) and response.status < 300 and response.body:
        assert isinstance(response.body, bytes)
        data = json.loads(response.body)
        return data if isinstance(data, dict) else {}
    return {}


class LedgerDiscord(FakeDiscord):
    """The fake Discord, telling the ledger about every message the bot sends or edits.

    A question is found by (user id, question text): from the interaction of a slash command, or
    from the user's message that a bot message replies to or whose thread it is posted in.
    """

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    @staticmethod
    def key(user_id: str, text: str) -> str:
        return f"discord:{user_id}:{text.strip()}"

    def _user_message(self, message_id: str | None) -> Json | None:
        if not message_id:
            return None
        for messages in self.messages.values():
            found = messages.get(int(message_id))
            if found is not None:
                return found
        return None

    def _owner_of_user_message(self, message: Json | None) -> int | None:
        if message is None:
            return None
        text = message["content"].replace(f"<@{self.bot_user['id']}>", " ")
        return self.ledger.owner(self.key(message["author"]["id"], text))

    def _owner_of_interaction(self, token: str) -> int | None:
        record = self.interactions.get(token)
        if record is None:
            return None
        payload = record.payload
        user = (payload.get("member") or {}).get("user") or payload.get("user") or {}
        options = payload["data"].get("options") or [{"value": ""}]
        return self.ledger.owner(self.key(str(user.get("id")), str(options[0]["value"])))

    async def _create_message(self, request: web.Request) -> web.Response:
        response = await super()._create_message(request)
        message = _body(response)
        if message:
            reference = (message.get("message_reference") or {}).get("message_id")
            qid = self._owner_of_user_message(
                self._user_message(reference) or self._user_message(message["channel_id"])
            )
            self.ledger.wrote(qid, f"discord-message:{message['id']}", message["content"])
        return response

    async def _edit_message(self, request: web.Request) -> web.Response:
        response = await super()._edit_message(request)
        message = _body(response)
        if message:
            key = f"discord-message:{message['id']}"
            self.ledger.wrote(self.ledger.owner(key), key, message["content"])
        return response

    async def _followup(self, request: web.Request) -> web.Response:
        response = await super()._followup(request)
        message = _body(response)
        if message:
            qid = self._owner_of_interaction(request.match_info["token"])
            self.ledger.wrote(qid, f"discord-message:{message['id']}", message["content"])
        return response

    async def _edit_webhook(self, request: web.Request) -> web.Response:
        response = await super()._edit_webhook(request)
        message = _body(response)
        if message:
            qid = self._owner_of_interaction(request.match_info["token"])
            self.ledger.wrote(qid, f"discord-message:{message['id']}", message["content"])
        return response


class LedgerSlack(FakeSlack):
    """The fake Slack, telling the ledger about every message the bot posts or updates.

    A question is found by the thread its replies go to (an @mention: the mention's ts), or by
    the "<@user> asked: _question_" header of the message `/ask` posts.
    """

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    @staticmethod
    def thread_key(ts: str) -> str:
        return f"slack-thread:{ts}"

    @staticmethod
    def response_key(response_url: str) -> str:
        return f"slack-response:{response_url.rsplit('/', 1)[-1]}"

    @staticmethod
    def header_key(user: str, question: str) -> str:
        return f"slack-header:<@{user}> asked: _{question}_"

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        reply = super()._m_chat_postMessage(params)
        if reply.get("ok"):
            text = str(params.get("text", ""))
            thread = params.get("thread_ts")
            if thread:
                qid = self.ledger.owner(self.thread_key(str(thread)))
            else:
                qid = self.ledger.owner("slack-header:" + text.split("\n\n", 1)[0])
            self.ledger.wrote(qid, f"slack-message:{reply['channel']}:{reply['ts']}", text)
        return reply

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        reply = super()._m_chat_update(params)
        if reply.get("ok"):
            key = f"slack-message:{params['channel']}:{params['ts']}"
            self.ledger.wrote(self.ledger.owner(key), key, str(params.get("text", "")))
        return reply

    async def _response_url(self, request: web.Request) -> web.Response:
        response = await super()._response_url(request)
        post = self.response_url_posts[-1]
        if post.get("response_type") == "in_channel":  # an answer that could not be posted
            key = f"slack-response:{post['_key']}"
            qid = self.ledger.owner(key)
            self.ledger.wrote(qid, f"{key}:{len(self.response_url_posts)}", str(post.get("text", "")))
        return response


@contextmanager
def discord_py_pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST routes and Gateway at the fake, for this process."""
    import discord.gateway
    import discord.http
    import yarl

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(discord.http.Route, "BASE", fake.api_base)
        patch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
        )
        yield


# ---- figures ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def figures(ledger: Ledger, *, wall_s: float, peak_rss_mb: float | None) -> dict[str, Any]:
    """The load test's report: counts, ack and answer times, peak RSS."""
    questions = [q for q in ledger.questions.values() if q.kind == "question"]
    answered = [q for q in questions if q.final_messages]
    acks = [q.ack_s for q in ledger.questions.values() if q.ack_s is not None]
    mention_first = [
        q.first_reply_s
        for q in questions
        if q.platform == "discord" and q.via == "mention" and q.first_reply_s is not None
    ]
    answer_times = [q.answered_s for q in answered if q.answered_s is not None]
    by_platform = {
        platform: sum(1 for q in answered if q.platform == platform)
        for platform in ("discord", "slack")
    }
    return {
        "questions": len(questions),
        "answered": len(answered),
        "answered_by_platform": by_platform,
        "abstained": sum(1 for q in answered if ABSTAIN_TEXT in q.final_texts[0]),
        "duplicates": ledger.duplicates(),
        "lost": sum(1 for q in questions if not q.final_messages and not q.refused),
        "refused": sum(1 for q in questions if q.refused),
        "ingests": [
            {"answered": bool(q.final_messages), "seconds": _r(q.answered_s)}
            for q in ledger.questions.values()
            if q.kind == "ingest"
        ],
        "ack_p95_s": _r(percentile(acks, 0.95), 3),
        "ack_max_s": _r(max(acks, default=None), 3),
        "acks_measured": len(acks),
        "discord_mention_first_reply_p95_s": _r(percentile(mention_first, 0.95)),
        "answer_p50_s": _r(percentile(answer_times, 0.5)),
        "answer_p95_s": _r(percentile(answer_times, 0.95)),
        "peak_rss_mb": peak_rss_mb,
        "wall_s": _r(wall_s, 1),
        "answers_per_min": _r(60 * len(answered) / wall_s if wall_s else None, 1),
    }


def publish(report: dict[str, Any], title: str) -> None:
    """Print the figures (seen with `pytest -s`) and write them to $FOLIO_LOAD_REPORT if set."""
    print(f"\n{title}\n" + json.dumps(report, indent=2))
    target = os.environ.get("FOLIO_LOAD_REPORT")
    if target:
        Path(target).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def question_rows(ledger: Ledger) -> list[dict[str, Any]]:
    """Every question with what happened to it (for a failure message)."""
    rows = []
    for q in ledger.questions.values():
        row = asdict(q)
        row["final_messages"] = sorted(q.final_messages)
        rows.append(row)
    return rows
