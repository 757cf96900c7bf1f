"""The terminal chat, driven through injected input and output streams."""

from __future__ import annotations

import asyncio
import io
import queue
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import FakeEngine

from adapters.console.chat import ConsoleChat
from bot.core import BotCore, CoreOptions
from bot.jobs import JobStatus


class ScriptedInput:
    """stdin that a test feeds line by line; `readline` blocks like a terminal's."""

    def __init__(self) -> None:
        self._lines: queue.Queue[str] = queue.Queue()

    def feed(self, line: str) -> None:
        self._lines.put(line + "\n")

    def close(self) -> None:
        self._lines.put("")

    def readline(self) -> str:
        return self._lines.get()


class WatchedOutput(io.StringIO):
    """stdout whose text a test can await."""

    def __init__(self) -> None:
        super().__init__()
        self._written = asyncio.Event()

    def write(self, text: str) -> int:
        self._written.set()
        return super().write(text)

    async def wait_for(self, needle: str, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while needle not in self.getvalue():
                self._written.clear()
                await self._written.wait()


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[BotCore]:
    engine = FakeEngine(token_delay_s=0.002)
    core = BotCore(engine, tmp_path / "bot.sqlite", CoreOptions(edit_interval_s=0))
    yield core
    await core.stop()


async def chat_with(core: BotCore, stdin: object, stdout: io.StringIO) -> ConsoleChat:
    chat = ConsoleChat(core, collection="docs", user="tester", stdin=stdin, stdout=stdout)  # type: ignore[arg-type]
    core.register(chat)
    await core.start()
    return chat


async def test_a_question_streams_its_answer_then_sources(core: BotCore) -> None:
    out = io.StringIO()
    chat = await chat_with(core, io.StringIO("What is X?\n"), out)
    await asyncio.wait_for(chat.run(), 10)  # end of input: waits for the answer, then returns
    text = out.getvalue()
    assert "queued (position 1, ~20s)" in text
    answer = "In docs: the answer to What is X? is forty two."
    assert f"{answer}\n\nSources: [docs.pdf p.3]\n" in text
    assert text.count("forty two") == 1  # streamed incrementally, not reprinted


async def test_follow_ups_in_a_session_share_the_conversation(core: BotCore) -> None:
    out = io.StringIO()
    chat = await chat_with(core, io.StringIO("first?\nsecond?\n"), out)
    await asyncio.wait_for(chat.run(), 10)
    engine = core._engine
    assert isinstance(engine, FakeEngine)
    assert [[t.question for t in c.history] for c in engine.calls] == [[], ["first?"]]


async def test_commands(core: BotCore) -> None:
    out = io.StringIO()
    chat = await chat_with(
        core, io.StringIO("/help\n/docs\n/history\n/cancel\n/cancel x\n/bogus\n"), out
    )
    await asyncio.wait_for(chat.run(), 10)
    text = out.getvalue()
    assert "/cancel [job]" in text
    assert "No documents yet" in text
    assert "You have not asked anything yet." in text
    assert "You have nothing queued or running." in text
    assert "Usage: /cancel [job number]" in text
    assert "Unknown command /bogus" in text


async def test_ingest_then_docs_and_history(core: BotCore, tmp_path: Path) -> None:
    pdf = tmp_path / "guide.pdf"
    pdf.write_bytes(b"%PDF-1.4 fake")
    out = WatchedOutput()
    stdin = ScriptedInput()
    chat = await chat_with(core, stdin, out)
    running = asyncio.create_task(chat.run())
    stdin.feed(f"/ingest {pdf}")
    await out.wait_for("Indexed 1 of 1 file(s): 2 pages, 4 chunks")
    stdin.feed("/ingest /nonexistent/file.pdf")
    await out.wait_for("Cannot read /nonexistent/file.pdf")
    stdin.feed("/docs")
    await out.wait_for("guide.pdf: 2 pages, 4 chunks")
    stdin.feed("/history")
    await out.wait_for("[done] guide.pdf")
    stdin.close()
    await asyncio.wait_for(running, 10)


async def test_cancel_a_running_answer_then_quit(core: BotCore) -> None:
    engine = core._engine
    assert isinstance(engine, FakeEngine)
    engine.token_delay_s = 0.05
    engine.enqueue(" ".join(["slow"] * 400))
    stdin, out = ScriptedInput(), WatchedOutput()
    chat = await chat_with(core, stdin, out)
    running = asyncio.create_task(chat.run())
    stdin.feed("a slow question")
    await out.wait_for("slow slow")
    stdin.feed("/cancel")
    await out.wait_for("Cancelled.")
    assert "Cancelling job 1…" in out.getvalue()
    stdin.feed("/quit")
    await asyncio.wait_for(running, 5)
    assert out.getvalue().rstrip().endswith("Bye.")


async def test_quit_cancels_what_is_still_queued(core: BotCore) -> None:
    engine = core._engine
    assert isinstance(engine, FakeEngine)
    gate = engine.hold()
    stdin, out = ScriptedInput(), WatchedOutput()
    chat = await chat_with(core, stdin, out)
    running = asyncio.create_task(chat.run())
    stdin.feed("held question")
    await out.wait_for("searching")
    stdin.feed("/quit")
    await asyncio.wait_for(running, 5)
    await out.wait_for("Cancelled.")
    job = await core.job(1)
    assert job is not None and job.status is JobStatus.CANCELLED
    gate.set()
