"""The load test (issue 8, "Load"): the real bot process — `folio run` with the embedded models, one
BotCore, the real discord.py and slack-bolt adapters — serving a fake Discord and a fake Slack at
once over loopback. 20 users (10 in a Discord guild, 10 in a Slack workspace: two collections,
each with its own PDF and planted fact) ask N questions, by slash command and by mention, while
an admin adds a PDF through chat.

Each user asks their next question once the previous one is answered, as people do, so the
per-user queue cap is not what is measured; a refusal would still be counted and reported.

Checked on the fake servers' side: every question answered exactly once (no duplicates, none lost),
no answer carries the other collection's fact or document, every Slack envelope acked and every
Discord interaction deferred within 3 s, and the bot process's peak RSS within 1000 MB.

    FOLIO_LOAD_QUESTIONS=200 FOLIO_LOAD_REPORT=load.json \\
        .venv/bin/pytest -s -m slow tests/reliability/test_reliability_load.py

The default size (60) is the reduced one CI runs; 200 is the issue's full size.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pdfs
import pytest
from fake_discord import EVERYONE_PERMISSIONS, MANAGE_GUILD, InteractionRecord
from fake_slack import (
    ADMIN,
    APP_TOKEN,
    BOT_TOKEN,
    FakeFile,
    app_mention,
    event_callback,
    slash_command,
)
from load_support import (
    Ledger,
    LedgerDiscord,
    LedgerSlack,
    Question,
    figures,
    publish,
    question_rows,
)
from reliability_env import clean_env

pytestmark = pytest.mark.slow

QUESTIONS = int(os.environ.get("FOLIO_LOAD_QUESTIONS", "60"))
USERS_PER_PLATFORM = 10
ACK_DEADLINE_S = 3.0  # Slack's envelope ack and Discord's interaction response deadlines
RSS_BOUND_MB = 1000.0
START_TIMEOUT_S = 300.0  # the bot process loads and warms its models first
ANSWER_TIMEOUT_S = 600.0  # per question, from when it was asked
BOT_SCRIPT = Path(__file__).with_name("load_bot.py")

HARBOUR = (
    "harbour-rules.pdf",
    [
        "Harbour rules. Boats must moor at the assigned berth. The harbour master keeps the register "
        "of arrivals and departures, and the office opens at seven in the morning.",
        "Fees. The harbour fee for a fishing boat is twelve euros per night. Sailing yachts pay by "
        "length. Fees are paid at the harbour office before departure.",
    ],
)
VAULT = (
    "vault-manual.pdf",
    [
        "Vault manual. Only two officers may open the vault together. Every opening is written in "
        "the vault log with the time and both names.",
        "Access. The vault code is 7741-ZETA. The code changes on the first day of every quarter, "
        "and the old code stops working at midnight.",
    ],
)
FERRY = (
    "ferry-times.pdf",
    [
        "Ferry timetable. The ferry to Marrow Island departs every ninety minutes from Pier 7. The "
        "first ferry leaves at six in the morning and the last one at ten at night.",
    ],
)
HARBOUR_QUESTIONS = [
    "What is the harbour fee for a fishing boat?",
    "How much does a fishing boat pay per night in the harbour?",
    "What does the harbour charge a fishing boat each night?",
    "How much is the nightly harbour fee for fishing boats?",
    "What fee does a fishing boat pay to stay in the harbour?",
    "How much do fishing boats pay per night?",
    "What is the nightly fee for a fishing boat?",
    "What does a night in the harbour cost a fishing boat?",
    "How much is the harbour fee per night for a fishing boat?",
    "What is the fee per night for fishing boats in the harbour?",
    "How much must a fishing boat pay the harbour each night?",
    "What is a fishing boat charged per night at the harbour?",
]
VAULT_QUESTIONS = [
    "What is the vault code?",
    "Which code opens the vault?",
    "What code do officers use to open the vault?",
    "What is the current code of the vault?",
    "Tell me the vault code.",
    "What code unlocks the vault?",
    "Which code is needed for the vault?",
    "What is the code for the vault?",
    "What code opens the vault this quarter?",
    "What is the access code of the vault?",
    "Which access code does the vault use?",
    "What is the code that opens the vault?",
]
# What an answer in one collection must never contain: the other collection's facts and names.
LEAKS = {
    "discord": ("7741", "ZETA", VAULT[0], FERRY[0], "Pier 7", "Marrow"),
    "slack": ("twelve euros", HARBOUR[0]),
}


@dataclass
class Users:
    discord: list[dict[str, Any]]
    discord_admin: dict[str, Any]
    slack: list[str]


def plan(ledger: Ledger, users: Users, total: int) -> dict[int, list[Question]]:
    """Question j goes to user j % 20, alternating slash command and mention; one in five asks
    the other collection's fact. Each user's question texts are distinct (the ledger's key)."""
    per_user: dict[int, list[Question]] = {u: [] for u in range(2 * USERS_PER_PLATFORM)}
    for j in range(total):
        u, k = j % (2 * USERS_PER_PLATFORM), j // (2 * USERS_PER_PLATFORM)
        platform = "discord" if u < USERS_PER_PLATFORM else "slack"
        other = (u + k) % 5 == 4
        own_list, other_list = (
            (HARBOUR_QUESTIONS, VAULT_QUESTIONS)
            if platform == "discord"
            else (VAULT_QUESTIONS, HARBOUR_QUESTIONS)
        )
        if k >= len(own_list):
            raise ValueError(f"at most {len(own_list) * 2 * USERS_PER_PLATFORM} questions")
        text = (other_list if other else own_list)[(u + k) % len(own_list)]
        via = "ask" if (u + k) % 2 == 0 else "mention"
        user = (
            str(users.discord[u]["id"])
            if platform == "discord"
            else users.slack[u - USERS_PER_PLATFORM]
        )
        question = Question(j, platform, via, user, text, asks_other_collection=other)
        per_user[u].append(question)
    return per_user


class LoadRun:
    """The two fakes, the bot process, and the traffic."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ledger = Ledger()
        self.discord = LedgerDiscord(self.ledger)
        self.slack = LedgerSlack(self.ledger)
        self.child: asyncio.subprocess.Process | None = None
        self.rss_report = tmp / "bot-rss.json"
        self.bot_log = tmp / "bot-output.log"
        self.records: dict[int, InteractionRecord] = {}
        self.envelopes: dict[int, str] = {}
        self._ids = itertools.count(10_000)
        self._ts = itertools.count(1)

    # ---- set-up --------------------------------------------------------------------------------

    async def start(self) -> Users:
        await self.discord.start()
        await self.slack.start()
        self.guild = self.discord.add_guild("harbour")
        self.channel = self.discord.text_channel(self.guild)
        users = Users(
            discord=[self.discord.make_user(f"reader{u}") for u in range(USERS_PER_PLATFORM)],
            discord_admin=self.discord.make_user("boss"),
            slack=[f"U0LOAD{u:02d}" for u in range(USERS_PER_PLATFORM)],
        )
        for user in users.slack:
            self.slack.add_user(user)
        self.slack.add_user(ADMIN, admin=True)
        env = {
            **clean_env(),
            "DISCORD_BOT_TOKEN": "fake-token",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "FOLIO_SLACK__API_BASE_URL": self.slack.api_url,
            "FOLIO_GENERATOR__THREADS": "1",
            "FOLIO_GENERATOR__MAX_ANSWER_TOKENS": "48",
        }
        with self.bot_log.open("wb") as log:
            self.child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BOT_SCRIPT),
                self.discord.api_base,
                self.discord.gateway_url,
                str(self.tmp / "data"),
                str(self.rss_report),
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        await self.until(
            lambda: (
                self.discord.ready.is_set()
                and len(self.discord.commands) > 0
                and self.slack.ws_connections > 0
            ),
            START_TIMEOUT_S,
            "the bot connected to both fakes",
        )
        return users

    async def until(self, check: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not check():
            if self.child is not None and self.child.returncode is not None:
                raise AssertionError(f"the bot exited ({self.child.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within:.0f}s: {what}\n{self.tail()}")
            await asyncio.sleep(0.1)

    def tail(self, lines: int = 40) -> str:
        if not self.bot_log.exists():
            return ""
        return "\n".join(self.bot_log.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self) -> dict[str, Any]:
        """SIGTERM the bot (a graceful stop, as in production); its peak RSS figures."""
        if self.child is not None and self.child.returncode is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.child.wait(), 60)
            except TimeoutError:
                self.child.kill()
                await self.child.wait()
        await self.discord.close()
        await self.slack.stop()
        if not self.rss_report.exists():
            return {}
        report: dict[str, Any] = json.loads(self.rss_report.read_text())
        return report

    # ---- what people do --------------------------------------------------------------------------

    async def ask(self, question: Question, users: Users) -> None:
        """Send one question; wait for its final reply (or refusal)."""
        ledger = self.ledger
        if question.platform == "discord":
            author = next(u for u in users.discord if str(u["id"]) == question.user)
            ledger.bind(LedgerDiscord.key(question.user, question.text), question.qid)
            ledger.sent(question)
            if question.via == "ask":
                option = {"name": "question", "type": 3, "value": question.text}
                self.records[question.qid] = await self.discord.slash_command(
                    self.channel, author, "ask", [option]
                )
            else:
                me = self.discord.bot_user
                await self.discord.user_message(
                    self.channel, author, f"<@{me['id']}> {question.text}", mentions=[me]
                )
        else:
            if question.via == "ask":
                ledger.bind(LedgerSlack.header_key(question.user, question.text), question.qid)
                ledger.sent(question)
                payload = slash_command(self.slack, "/ask", question.text, user=question.user)
                ledger.bind(LedgerSlack.response_key(payload["response_url"]), question.qid)
                envelope = await self.slack.send_envelope("slash_commands", payload)
                self.envelopes[question.qid] = envelope
                ack = await self.slack.wait_ack(envelope, within=60)
                text = str((ack.get("payload") or {}).get("text", ""))
                if ":warning:" in text:
                    ledger.refuse(question.qid, text)
            else:
                ts = f"1700000000.{next(self._ts):06d}"
                ledger.bind(LedgerSlack.thread_key(ts), question.qid)
                ledger.sent(question)
                event = app_mention(question.text, user=question.user, ts=ts)
                self.envelopes[question.qid] = await self.slack.send_envelope(
                    "events_api", event_callback(event)
                )
        await ledger.wait(question.qid, ANSWER_TIMEOUT_S)

    def add_question(self, question: Question) -> Question:
        return self.ledger.add(question)

    async def discord_ingest(self, users: Users, name: str, pages: list[str]) -> Question:
        boss = users.discord_admin
        attachment = self.discord.add_attachment(
            int(self.channel["id"]), name, pdfs.make_pdf(pages)
        )
        question = self.ledger.add(
            Question(next(self._ids), "discord", "ask", str(boss["id"]), name, kind="ingest"),
            LedgerDiscord.key(str(boss["id"]), str(attachment["id"])),
        )
        self.ledger.sent(question)
        self.records[question.qid] = await self.discord.slash_command(
            self.channel,
            boss,
            "ingest",
            [{"name": "file", "type": 11, "value": attachment["id"]}],
            roles=[self.discord.role_id(self.guild, "admins")],
            permissions=EVERYONE_PERMISSIONS | MANAGE_GUILD,
            attachments=[attachment],
        )
        await self.ledger.wait(question.qid, ANSWER_TIMEOUT_S)
        return question

    async def slack_ingest(self, name: str, pages: list[str]) -> Question:
        file_id = f"F0{name.split('.')[0].upper().replace('-', '')}"
        info = self.slack.add_file(FakeFile(file_id, name, pdfs.make_pdf(pages)))
        ts = f"1700000000.{next(self._ts):06d}"
        question = self.ledger.add(
            Question(next(self._ids), "slack", "mention", ADMIN, name, kind="ingest"),
            LedgerSlack.thread_key(ts),
        )
        self.ledger.sent(question)
        event = app_mention("please add this", user=ADMIN, ts=ts, files=[info])
        self.envelopes[question.qid] = await self.slack.send_envelope(
            "events_api", event_callback(event)
        )
        await self.ledger.wait(question.qid, ANSWER_TIMEOUT_S)
        return question

    def collect_acks(self) -> None:
        """Ack times as the fakes saw them: envelope sent → ack; interaction → first callback."""
        for qid, record in self.records.items():
            if record.responded_at is not None:
                self.ledger.questions[qid].ack_s = record.responded_at - record.dispatched_at
        for qid, envelope in self.envelopes.items():
            acked = self.slack.acked_at.get(envelope)
            if acked is not None:
                self.ledger.questions[qid].ack_s = acked - self.slack.sent_at[envelope]


async def test_two_platforms_two_collections_under_load(tmp_path: Path) -> None:
    run = LoadRun(tmp_path)
    try:
        users = await run.start()
        seeded = await asyncio.gather(run.discord_ingest(users, *HARBOUR), run.slack_ingest(*VAULT))
        assert all(q.final_messages for q in seeded), ([q.last_text for q in seeded], run.tail())

        per_user = plan(run.ledger, users, QUESTIONS)
        for questions in per_user.values():
            for question in questions:
                run.add_question(question)

        async def user(questions: list[Question]) -> None:
            for question in questions:
                await run.ask(question, users)

        async def admin() -> None:
            # once the queue is busy, an admin adds a document through chat
            await asyncio.sleep(5.0)
            await run.slack_ingest(*FERRY)

        started = time.monotonic()
        await asyncio.gather(admin(), *(user(qs) for qs in per_user.values()))
        wall_s = time.monotonic() - started
        await asyncio.sleep(3.0)  # a late duplicate would arrive now
        run.collect_acks()
    finally:
        rss = await run.stop()

    report = figures(run.ledger, wall_s=wall_s, peak_rss_mb=rss.get("peak_rss_mb"))
    report["bot_rss"] = rss
    report["measured_where"] = "acks and answers on the fake servers; RSS of the bot process"
    publish(report, f"Load: {QUESTIONS} questions, 20 users, 2 platforms, 2 collections")

    rows = question_rows(run.ledger)
    lost = [r for r in rows if r["kind"] == "question" and not r["final_messages"]]
    assert report["lost"] == 0 and not [r for r in lost if not r["refused"]], lost[:5]
    assert report["refused"] == 0, [r for r in rows if r["refused"]][:5]
    assert report["duplicates"] == 0, (
        [r for r in rows if len(r["final_messages"]) > 1][:5],
        run.ledger.unattributed_finals[:5],
    )
    assert report["answered"] == QUESTIONS
    assert all(ingest["answered"] for ingest in report["ingests"]), report["ingests"]
    for question in run.ledger.questions.values():
        if question.kind != "question":
            continue
        for text in question.final_texts:
            leaked = [marker for marker in LEAKS[question.platform] if marker in text]
            assert not leaked, (question.platform, question.text, text)
    unacked = [
        qid for qid in (*run.records, *run.envelopes) if run.ledger.questions[qid].ack_s is None
    ]
    assert not unacked, unacked
    assert report["ack_max_s"] is not None and report["ack_max_s"] < ACK_DEADLINE_S, report
    assert rss.get("exit_code") == 0, run.tail()
    assert report["peak_rss_mb"] is not None and report["peak_rss_mb"] <= RSS_BOUND_MB, report
