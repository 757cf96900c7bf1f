"""`folio run` itself SIGKILLed while it writes an answer: after a restart the question is answered
exactly once, in the same message that showed the draft, the history row is complete, and a Slack
redelivery of the same event adds nothing.

The whole product runs as a real process (`python -m bot run`, the Procfile's command) with the
embedded models, connected over loopback in Socket Mode to the fake Slack of the adapter tests.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pdfs
import pytest
from fake_slack import (
    APP_TOKEN,
    BOT_TOKEN,
    TEAM_ID,
    FakeSlack,
    Message,
    app_mention,
    event_callback,
    running_fake_slack,
)
from reliability_env import clean_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = f"slack-{TEAM_ID}"
QUESTION = "How does the harbour master decide when the ferry may sail in fog?"
PAGES = [
    "The harbour master keeps the ferry timetable and the safety rules for the crossing.",
    "In fog the harbour master lets the ferry sail only when visibility at the pier head is at "
    "least five hundred metres, the radar is working, and the pilot boat has reported the "
    "channel clear. The decision is written in the harbour log with the time and the reading.",
]


def folio_env(fake: FakeSlack) -> dict[str, str]:
    return clean_env() | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "FOLIO_SLACK__API_BASE_URL": fake.api_url,
        "FOLIO_SLACK__EDIT_INTERVAL_S": "0.2",
        "FOLIO_GENERATOR__THREADS": "1",
        "FOLIO_GENERATOR__ANSWER_MODE": "hybrid",  # the model streams: there is a "mid-answer"
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with running_fake_slack() as server:
        yield server


async def start_bot(data: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--data-dir", str(data), "run",
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def in_thread(fake: FakeSlack, ts: str) -> list[Message]:
    return [m for m in fake.messages.values() if m.thread_ts == ts or m.ts == ts]


def answered(message: Message) -> bool:
    """A final reply: it names its pages (as sources, or as the closest pages) and is not a
    draft (drafts carry their checked sentences' pages too, and end in "…")."""
    return "harbour.pdf p." in message.text and not message.text.rstrip().endswith("…")


async def test_folio_run_killed_mid_answer_answers_once_after_restart(
    tmp_path: Path, fake: FakeSlack
) -> None:
    data = tmp_path / "data"
    pdf = tmp_path / "harbour.pdf"
    pdf.write_bytes(pdfs.make_pdf(PAGES))
    env = folio_env(fake)
    ingest = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "--data-dir", str(data), "ingest",
         "--collection", COLLECTION, str(pdf)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr

    bot = await start_bot(data, env)
    try:
        mention = app_mention(QUESTION)
        event = event_callback(mention)
        await fake.wait_for(lambda: fake.ws_connections >= 1, within=120)  # models load first
        ack = await fake.wait_ack(await fake.send_envelope("events_api", event))
        assert ack["envelope_id"]
        # Mid-answer: a draft is in the thread ("Queued…" edited into it) while the model writes.
        streaming = await fake.wait_for(
            lambda: next(
                (m for m in in_thread(fake, mention["ts"])
                 if m.edits >= 1 and not m.text.startswith("Queued") and not answered(m)),
                None,
            ),
            within=120,
        )
        bot.send_signal(signal.SIGKILL)
        assert await bot.wait() == -signal.SIGKILL
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    assert not any(answered(m) for m in in_thread(fake, mention["ts"]))
    with sqlite3.connect(data / "bot.sqlite") as db:
        [(status, reply_to)] = db.execute("SELECT status, reply_to FROM jobs").fetchall()
    assert status == "running"
    # The message the draft streams into was stored with the job when it was posted.
    assert json.loads(reply_to)["message_ts"] == streaming.ts

    restarted = await start_bot(data, env)
    try:
        final = await fake.wait_for(
            lambda: next((m for m in in_thread(fake, mention["ts"]) if answered(m)), None),
            within=180,
        )
        # Slack redelivers the same event (its retry after the outage): nothing new happens.
        await fake.wait_for(lambda: fake.ws_connections >= 2, within=30)
        retry = await fake.send_envelope("events_api", event, retry_attempt=1)
        await fake.wait_ack(retry)
        await asyncio.sleep(2.0)
        restarted.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(restarted.wait(), 60) == 0
    finally:
        if restarted.returncode is None:
            restarted.kill()
            await restarted.wait()

    answers = [m for m in in_thread(fake, mention["ts"]) if answered(m)]
    assert answers == [final], [m.text for m in in_thread(fake, mention["ts"])]
    assert "[harbour.pdf p.2]" in final.text, final.text
    assert "five hundred metres" in final.text or "radar" in final.text, final.text
    # The restarted process edited the draft the crash left behind into the answer: no second
    # message, and no stale "writing…" draft beside the answer.
    assert final.ts == streaming.ts
    assert in_thread(fake, mention["ts"]) == [final], [m.text for m in in_thread(fake, mention["ts"])]
    with sqlite3.connect(data / "bot.sqlite") as db:
        jobs = db.execute("SELECT status, attempts, delivered_at IS NOT NULL FROM jobs").fetchall()
        rows = db.execute("SELECT question, answer, citations FROM history").fetchall()
    assert jobs == [("done", 2, 1)]
    assert len(rows) == 1
    question, answer, citations = rows[0]
    assert question == QUESTION
    assert answer and answer.strip()[-1] in ".!?)]", answer  # complete, not cut off
    assert [(c["document"], c["page"]) for c in json.loads(citations)] == [("harbour.pdf", 2)]
