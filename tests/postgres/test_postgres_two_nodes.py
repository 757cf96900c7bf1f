"""Two real `folio run` processes on one Postgres and one Redis (issue 18), each with its own,
otherwise empty, data folder, connected in Socket Mode to the fake Slack over loopback with the
embedded models: a PDF ingested through chat on one node is answered by the other; the node
that is writing an answer is SIGKILLed and the other one finishes it, once; `/history` is the
same on both (it lives in Postgres, not in either node's bot.sqlite).

Slack gives each event to one of an app's connections; the fake gives it to the newest one, so
the test decides which node hears what by when it connects.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pdfs
import pytest
import redis
from fake_slack import (
    ADMIN,
    APP_TOKEN,
    BOT_TOKEN,
    FakeFile,
    FakeSlack,
    Message,
    app_mention,
    event_callback,
    running_fake_slack,
    slash_command,
)
from reliability_env import clean_env

if TYPE_CHECKING:
    from scale_redis import RedisServer

pytest_plugins = ["scale_redis"]  # its fixture: redis_server
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "The harbour master keeps the ferry timetable and the safety rules for the crossing.",
    "In fog the harbour master lets the ferry sail only when visibility at the pier head is at "
    "least five hundred metres, the radar is working, and the pilot boat has reported the "
    "channel clear. The decision is written in the harbour log with the time and the reading.",
]
FIRST = "How does the harbour master decide when the ferry may sail in fog?"
SECOND = "What must the pilot boat report before the ferry sails in fog?"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with running_fake_slack() as server:
        yield server


def in_thread(fake: FakeSlack, ts: str) -> list[Message]:
    return [m for m in fake.messages.values() if m.thread_ts == ts or m.ts == ts]


def answered(message: Message) -> bool:
    """A final reply: it names its pages and is not a draft (a draft, cited too, ends in "…")."""
    return "harbour.pdf p." in message.text and not message.text.rstrip().endswith("…")


async def start_node(data: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--data-dir", str(data), "run",
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=(data.parent / f"{data.name}.log").open("ab"),
    )


async def until(fake: FakeSlack, what: str, thread: str, found: Callable[[], object],
                within: float = 240) -> Any:
    """Wait for `found()`; on a timeout, fail saying what was awaited and what the thread has."""
    try:
        return await fake.wait_for(found, within=within)
    except TimeoutError:
        texts = [(m.text[:120], m.edits) for m in in_thread(fake, thread)]
        pytest.fail(f"no {what} within {within:.0f}s; the thread has {texts}")


async def stop(node: asyncio.subprocess.Process) -> None:
    if node.returncode is None:
        node.kill()
        await node.wait()


def running_owner_pid(client: redis.Redis, prefix: str) -> int | None:
    """The pid of the process running a job (its owner token is host:pid:hex#attempt)."""
    for key in client.scan_iter(f"{prefix}:job:*"):
        status, token = client.hmget(key, "status", "token")
        if status == b"running" and token:
            return int(token.decode().split(":")[1])
    return None


async def test_two_nodes_share_documents_and_finish_each_others_answers(
    tmp_path: Path, fake: FakeSlack, postgres_url: str, redis_server: RedisServer
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = clean_env() | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "FOLIO_SLACK__API_BASE_URL": fake.api_url,
        "FOLIO_SLACK__EDIT_INTERVAL_S": "0.2",
        "FOLIO_GENERATOR__THREADS": "1",
        "FOLIO_GENERATOR__ANSWER_MODE": "hybrid",  # the model streams: there is a "mid-answer"
        "FOLIO_WEB__ENABLED": "false",
        "FOLIO_STORE__BACKEND": "postgres",
        "FOLIO_DATABASE_URL": postgres_url,
        "FOLIO_QUEUE__BACKEND": "redis",
        "FOLIO_REDIS_URL": redis_server.url,
        "FOLIO_QUEUE__REDIS_PREFIX": prefix,
        "FOLIO_QUEUE__CLAIM_TIMEOUT_S": "3",
    }
    one_data, two_data = tmp_path / "node1", tmp_path / "node2"
    nodes: list[asyncio.subprocess.Process] = []
    try:
        # Node one hears an admin's mention with the PDF attached and ingests it.
        nodes.append(one := await start_node(one_data, env))
        await fake.wait_for(lambda: fake.ws_connections >= 1, within=180)
        file = fake.add_file(FakeFile("F0HARBOUR", "harbour.pdf", pdfs.make_pdf(PAGES)))
        upload = app_mention("please add this", user=ADMIN, files=[file])
        await fake.wait_ack(await fake.send_envelope("events_api", event_callback(upload)))
        await until(fake, "ingest report", upload["ts"],
                    lambda: any("Indexed 1 of 1" in m.text for m in in_thread(fake, upload["ts"])))
        one.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(one.wait(), 60) == 0

        # Node two, which never saw the file, answers from it.
        nodes.append(await start_node(two_data, env))
        await fake.wait_for(lambda: fake.ws_connections >= 2, within=180)
        first = app_mention(FIRST)
        await fake.wait_ack(await fake.send_envelope("events_api", event_callback(first)))
        answer = await until(fake, "answer", first["ts"], lambda: next(
            (m for m in in_thread(fake, first["ts"]) if answered(m)), None))
        assert "[harbour.pdf p.2]" in answer.text, answer.text
        assert not (two_data / "documents.sqlite").exists()  # not from a copy of its own
        assert not (two_data / "faiss").exists()

        # Both up; whichever runs the next answer is killed while it writes; the other ends it.
        nodes.append(await start_node(one_data, env))
        await fake.wait_for(lambda: fake.ws_connections >= 3, within=180)
        second = app_mention(SECOND)
        await fake.wait_ack(await fake.send_envelope("events_api", event_callback(second)))
        client = redis.Redis.from_url(redis_server.url)

        def mid_answer() -> int | None:
            """The pid running the job, once its reply is being written (edited, not final)."""
            thread = in_thread(fake, second["ts"])
            if any(answered(m) for m in thread):
                pytest.fail("answered before it could be interrupted: " + str(thread))
            writing = any(m.edits >= 1 and not m.text.startswith("Queued") for m in thread)
            return running_owner_pid(client, prefix) if writing else None

        owner = await until(fake, "reply being written", second["ts"], mid_answer)
        victim = next(n for n in nodes if n.pid == owner and n.returncode is None)
        survivor = next(n for n in nodes if n is not victim and n.returncode is None)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        final = await until(fake, "answer after the kill", second["ts"], lambda: next(
            (m for m in in_thread(fake, second["ts"]) if answered(m)), None))
        assert survivor.returncode is None
        assert "[harbour.pdf p.2]" in final.text, final.text
        await asyncio.sleep(2.0)
        assert [m for m in in_thread(fake, second["ts"]) if answered(m)] == [final]

        # /history is the same on both nodes, each answering from its own (empty) data dir.
        for node in nodes:
            if node.returncode is None:
                node.send_signal(signal.SIGTERM)
                await asyncio.wait_for(node.wait(), 60)
        seen = []
        for data in (one_data, two_data):
            nodes.append(node := await start_node(data, env))
            connections = fake.ws_connections
            await fake.wait_for(lambda c=connections: fake.ws_connections > c, within=180)
            before = len(fake.response_url_posts)
            await fake.send_envelope("slash_commands", slash_command(fake, "/history", ""))
            posts = await fake.wait_for(lambda b=before: fake.response_url_posts[b:] or None,
                                        within=60)
            seen.append(str(posts[0]["text"]))
            node.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(node.wait(), 60) == 0
        assert seen[0] == seen[1]
        assert FIRST in seen[0] and SECOND in seen[0], seen[0]
    finally:
        for node in nodes:
            await stop(node)
