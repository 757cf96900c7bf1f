"""A chat in the terminal, on the same contract as Discord and Slack (`adapters.base.Adapter`).

Each line read is a question submitted to the core as a job (platform "console", or a name of the
process's own when the queue is shared, see `console_platform`; the OS user; one conversation per
session, so follow-ups work); the answer is printed as it is written, then its sources. Input is
read on a separate thread so the event loop never blocks on stdin, and the streams are injectable
so tests can drive a whole session.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import socket
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from adapters.base import StreamLimits
from bot.errors import FolioError
from bot.history import HistoryEntry
from bot.jobs import Accepted, Attachment, Job, JobKind
from bot.render import render_answer, render_ingest, render_ingest_progress, render_queued
from bot.replies import user_message
from rag.types import Answer, DocumentInfo, IngestReport

PLATFORM = "console"

HELP = """\
Type a question about the documents and press Enter. Commands:
  /cancel [job]   stop your latest (or the given) question
  /docs           list the indexed documents
  /history        your recent questions
  /ingest <path>  add a PDF to the collection
  /help           this text
  /quit           leave (end of input also leaves, after the pending answers)"""


def console_platform(*, shared_queue: bool) -> str:
    """The platform name of this terminal chat's jobs.

    "console" with the process's own queue. A queue shared by several processes (Redis) hands a
    job to any process serving its platform, and only the terminal that asked can print the
    answer: there each chat gets a name of its own, "console-<host>-<pid>".
    """
    if not shared_queue:
        return PLATFORM
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()) or "host"
    return f"{PLATFORM}-{host}-{os.getpid()}"


class ConsoleCore(Protocol):
    """What the chat needs from `bot.core.BotCore`."""

    async def submit(self, job: Job) -> Accepted: ...

    async def cancel(self, platform: str, user: str, job_id: int | None = None) -> Job: ...

    async def history(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]: ...

    async def documents(self, collection: str) -> list[DocumentInfo]: ...


class _LineReader:
    """Reads lines on a daemon thread and hands each to the loop; None marks end of input.

    A daemon thread, because a blocking `readline` cannot be interrupted: it must not keep the
    process alive after the chat ends. It shares nothing but the loop-safe handoff.
    """

    def __init__(self, stream: TextIO, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._loop = loop
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._thread = threading.Thread(target=self._read, name="folio-console-input", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        try:
            while line := self._stream.readline():
                self._loop.call_soon_threadsafe(self.lines.put_nowait, line.rstrip("\r\n"))
        finally:
            self._loop.call_soon_threadsafe(self.lines.put_nowait, None)


class ConsoleChat:
    """The terminal adapter: reads questions, prints statuses and streams answers."""

    limits = StreamLimits(edit_interval_s=0.05)  # no rate limit: stream nearly word by word

    def __init__(
        self,
        core: ConsoleCore,
        *,
        collection: str,
        user: str | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        session: str | None = None,
        platform: str = PLATFORM,
    ) -> None:
        import sys

        self.platform = platform  # see `console_platform`
        self._core = core
        self._collection = collection
        self._user = user or getpass.getuser()
        self._in = stdin if stdin is not None else sys.stdin
        self._out = stdout if stdout is not None else sys.stdout
        self._session = session or uuid.uuid4().hex[:12]
        self._count = 0
        self._printed: dict[int, str] = {}  # answer text already on screen, per job
        self._outstanding: dict[int, asyncio.Event] = {}

    # ---- the input side ---------------------------------------------------------------------

    async def run(self) -> None:
        """Chat until /quit (cancels your pending questions) or end of input (waits for them)."""
        reader = _LineReader(self._in, asyncio.get_running_loop())
        reader.start()
        self._say(f'Folio chat on "{self._collection}". Ask a question; /help lists commands.')
        while True:
            line = await reader.lines.get()
            if line is None:
                await self._wait_outstanding()
                return
            line = line.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                await self._cancel_outstanding()
                self._say("Bye.")
                return
            try:
                await self._handle(line)
            except Exception as exc:
                self._say(user_message(exc, context="console"))

    async def _handle(self, line: str) -> None:
        command, _, argument = line.partition(" ")
        argument = argument.strip()
        if command == "/help":
            self._say(HELP)
        elif command == "/cancel":
            job_id = int(argument) if argument.isdigit() else None
            if argument and job_id is None:
                raise FolioError("Usage: /cancel [job number]")
            job = await self._core.cancel(self.platform, self._user, job_id)
            self._say(f"Cancelling job {job.id}…")
        elif command == "/docs":
            self._say(_documents_text(await self._core.documents(self._collection)))
        elif command == "/history":
            self._say(_history_text(await self._core.history(self.platform, self._user, limit=10)))
        elif command == "/ingest":
            await self._ingest(argument)
        elif command.startswith("/"):
            self._say(f"Unknown command {command}; /help lists them.")
        else:
            await self._submit(JobKind.QUESTION, text=line)

    async def _ingest(self, argument: str) -> None:
        if not argument:
            raise FolioError("Usage: /ingest <path to a PDF>")
        path = Path(argument)
        try:
            data = await asyncio.to_thread(lambda: path.expanduser().read_bytes())
        except OSError as exc:
            raise FolioError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        await self._submit(JobKind.INGEST, attachment=Attachment(path.name, data))

    async def _submit(
        self, kind: JobKind, *, text: str = "", attachment: Attachment | None = None
    ) -> None:
        self._count += 1
        job = Job(
            kind=kind,
            platform=self.platform,
            collection=self._collection,
            channel="terminal",
            thread=self._session,
            user=self._user,
            idempotency_key=f"{self._session}:{self._count}",
            text=text,
            attachment=attachment,
            reply_to={"session": self._session},
        )
        accepted = await self._core.submit(job)
        self._outstanding[accepted.job_id] = asyncio.Event()

    async def _wait_outstanding(self) -> None:
        await asyncio.gather(*(event.wait() for event in self._outstanding.values()))

    async def _cancel_outstanding(self) -> None:
        for job_id, done in list(self._outstanding.items()):
            if not done.is_set():
                with contextlib.suppress(FolioError):  # it finished meanwhile
                    await self._core.cancel(self.platform, self._user, job_id)

    # ---- the output side: adapters.base.Adapter ---------------------------------------------

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        self._say(f"{render_queued(position, eta_s)} [job {job.id}; /cancel to stop]")

    async def post_status(self, job: Job, text: str) -> None:
        self._end_stream(job)
        self._say(f"… {text}")

    async def stream_partial(self, job: Job, text: str) -> None:
        printed = self._printed.get(job.id)
        if printed is None:
            self._write(text)
        elif text.startswith(printed):
            self._write(text[len(printed):])
        else:  # the engine revised earlier text: start a fresh line rather than garble it
            self._write("\n" + text)
        self._printed[job.id] = text

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        self._say(f"… {render_ingest_progress(name, done, total)}")

    async def post_answer(self, job: Job, answer: Answer) -> None:
        final = render_answer(answer)
        printed = self._printed.pop(job.id, None)
        if printed and final.startswith(printed):
            self._say(final[len(printed):])
        else:
            if printed:
                self._write("\n")
            self._say(final)
        self._finished(job)

    async def post_ingest_report(self, job: Job, report: IngestReport) -> None:
        self._end_stream(job)
        self._say(render_ingest(report))
        self._finished(job)

    async def post_notice(self, job: Job, text: str) -> None:
        self._end_stream(job)
        self._say(text)
        self._finished(job)

    async def post_error(self, job: Job, message: str) -> None:
        self._end_stream(job)
        self._say(f"[job {job.id}] {message}")
        self._finished(job)

    # ---- helpers ----------------------------------------------------------------------------

    def _finished(self, job: Job) -> None:
        self._outstanding.setdefault(job.id, asyncio.Event()).set()

    def _end_stream(self, job: Job) -> None:
        if self._printed.pop(job.id, None):
            self._write("\n")

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def _say(self, text: str) -> None:
        self._write(text + "\n")


def _documents_text(docs: Sequence[DocumentInfo]) -> str:
    if not docs:
        return "No documents yet (/ingest <path> adds one)."
    lines = [f"{len(docs)} document(s):"]
    lines.extend(f"  {d.name}: {d.pages} pages, {d.chunks} chunks" for d in docs)
    return "\n".join(lines)


def _history_text(entries: Sequence[HistoryEntry]) -> str:
    if not entries:
        return "You have not asked anything yet."
    lines = ["Your recent requests (newest first):"]
    for entry in entries:
        result = (entry.answer or entry.error or entry.status).strip().replace("\n", " ")
        if len(result) > 100:
            result = result[:97] + "..."
        lines.append(f"  #{entry.job_id} [{entry.status}] {entry.question} → {result}")
    return "\n".join(lines)
