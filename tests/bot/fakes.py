"""Hand-written fakes for the bot core: a scripted engine and a recording adapter.

`FakeEngine` implements `bot.ports.AnswerEngine` honestly: it is synchronous, emits progress like
the real engine (searching, then the text growing word by word), checks `cancelled()` between
words, and can be made slow (sleeping or CPU-busy per word) or held at a gate until a test says go.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.base import StreamLimits
from bot.errors import GenerationCancelled, NotFoundError
from bot.jobs import Job, JobKind
from rag.types import (
    Answer,
    AnswerProgress,
    CancelCheck,
    Citation,
    DocumentInfo,
    FileOutcome,
    IngestProgressCallback,
    IngestReport,
    Passage,
    ProgressCallback,
    Timings,
    Turn,
)

if TYPE_CHECKING:
    from bot.core import BotCore

StartCore = Callable[..., Awaitable["BotCore"]]
"""The `start_core` fixture: `await start_core(engine, *adapters, **options)`."""


@dataclass(frozen=True)
class AnswerCall:
    question: str
    collection: str
    history: tuple[Turn, ...]
    thread_id: int


@dataclass
class FakeEngine:
    """A scripted engine: `enqueue` replies (text, Answer or exception); else a default answer."""

    token_delay_s: float = 0.0
    busy: bool = False  # burn CPU instead of sleeping for each word
    model_name: str = "fake-model"
    calls: list[AnswerCall] = field(default_factory=list)
    ingested: list[tuple[str, bytes, str]] = field(default_factory=list)
    thread_ids: set[int] = field(default_factory=set)
    docs: dict[str, list[DocumentInfo]] = field(default_factory=dict)
    _replies: deque[str | Answer | BaseException] = field(default_factory=deque)
    _gate: threading.Event | None = None

    def enqueue(self, *replies: str | Answer | BaseException) -> None:
        self._replies.extend(replies)

    def hold(self) -> threading.Event:
        """Make every answer wait (still cancellable) until the returned event is set."""
        self._gate = threading.Event()
        return self._gate

    def answer(
        self,
        question: str,
        *,
        collection: str,
        history: Sequence[Turn] = (),
        on_progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
    ) -> Answer:
        self.thread_ids.add(threading.get_ident())
        self.calls.append(AnswerCall(question, collection, tuple(history), threading.get_ident()))
        is_cancelled = cancelled or (lambda: False)
        progress = on_progress or (lambda _p: None)
        progress(AnswerProgress("searching"))
        if self._gate is not None:
            while not self._gate.wait(0.005):
                if is_cancelled():
                    raise GenerationCancelled()
        reply = self._replies.popleft() if self._replies else default_reply(question, collection)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Answer):
            return reply
        words = reply.split(" ")
        started = time.monotonic()
        for count in range(1, len(words) + 1):
            if is_cancelled():
                raise GenerationCancelled()
            self._work()
            progress(AnswerProgress("writing", " ".join(words[:count])))
        return Answer(
            text=reply,
            citations=[Citation(f"{collection}.pdf", 3, "a quote")],
            retrieved=[
                Passage(1, f"{collection}.pdf", 3, "text", 0.9, 0.8, 1),
                Passage(2, f"{collection}.pdf", 5, "text", 0.7, 0.6, 2),
            ],
            abstained=False,
            model=self.model_name,
            tokens=len(words),
            timings=Timings(retrieval=0.01, first_token=0.02, total=time.monotonic() - started),
        )

    def _work(self) -> None:
        if self.token_delay_s <= 0:
            return
        if not self.busy:
            time.sleep(self.token_delay_s)
            return
        end = time.perf_counter() + self.token_delay_s
        total = 0
        while time.perf_counter() < end:  # pure-Python CPU work, holding the GIL in turns
            total += sum(i * i for i in range(200))

    def ingest_bytes(
        self,
        name: str,
        data: bytes,
        *,
        collection: str,
        on_progress: IngestProgressCallback | None = None,
    ) -> IngestReport:
        self.thread_ids.add(threading.get_ident())
        self.ingested.append((name, data, collection))
        for page in (1, 2):
            if on_progress is not None:
                on_progress(name, page, 2)
            self._work()
        if not data.startswith(b"%PDF"):
            return IngestReport([FileOutcome(name, "failed", reason="not a PDF")], seconds=0.1)
        self.docs.setdefault(collection, []).append(
            DocumentInfo(name, pages=2, chunks=4, sha256="0" * 64, added_at="2024-01-01T00:00:00Z")
        )
        return IngestReport([FileOutcome(name, "added", pages=2, chunks=4)], seconds=0.1)

    def documents(self, collection: str) -> list[DocumentInfo]:
        self.thread_ids.add(threading.get_ident())
        return list(self.docs.get(collection, []))

    def forget(self, name: str, *, collection: str) -> DocumentInfo:
        self.thread_ids.add(threading.get_ident())
        for doc in self.docs.get(collection, []):
            if doc.name == name:
                self.docs[collection].remove(doc)
                return doc
        raise NotFoundError(f"There is no document named {name}.")


def default_reply(question: str, collection: str) -> str:
    return f"In {collection}: the answer to {question} is forty two."


@dataclass(frozen=True)
class Event:
    kind: str  # acknowledge, post_status, stream_partial, ..., post_error
    job: Job
    payload: Any
    at: float  # time.monotonic() when the call started

    @property
    def final(self) -> bool:
        return self.kind in FINAL_KINDS


FINAL_KINDS = ("post_answer", "post_ingest_report", "post_notice", "post_error")


class RecordingAdapter:
    """An `Adapter` that records every call, and lets tests await what they expect to see."""

    limits = StreamLimits()  # the core's edit interval (each test's CoreOptions)

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def _record(self, kind: str, job: Job, payload: Any) -> None:
        async with self._changed:
            self.events.append(Event(kind, job, payload, time.monotonic()))
            self._changed.notify_all()

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        await self._record("acknowledge", job, (position, eta_s))

    async def post_status(self, job: Job, text: str) -> None:
        await self._record("post_status", job, text)

    async def stream_partial(self, job: Job, text: str) -> None:
        await self._record("stream_partial", job, text)

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        await self._record("post_ingest_progress", job, (name, done, total))

    async def post_answer(self, job: Job, answer: Answer) -> None:
        await self._record("post_answer", job, answer)

    async def post_ingest_report(self, job: Job, report: IngestReport) -> None:
        await self._record("post_ingest_report", job, report)

    async def post_notice(self, job: Job, text: str) -> None:
        await self._record("post_notice", job, text)

    async def post_error(self, job: Job, message: str) -> None:
        await self._record("post_error", job, message)

    # ---- for assertions ----------------------------------------------------------------------

    def finals(self) -> list[Event]:
        return [e for e in self.events if e.final]

    def for_job(self, job_id: int) -> list[Event]:
        return [e for e in self.events if e.job.id == job_id]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wake on every recorded call until `predicate` holds (fails after `within` seconds)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), within)

    async def wait_final(self, job_id: int, within: float = 10.0) -> Event:
        await self.wait_until(lambda: any(e.final for e in self.for_job(job_id)), within)
        return next(e for e in self.for_job(job_id) if e.final)

    async def wait_kind(self, job_id: int, kind: str, within: float = 10.0) -> Event:
        await self.wait_until(lambda: any(e.kind == kind for e in self.for_job(job_id)), within)
        return next(e for e in self.for_job(job_id) if e.kind == kind)


_keys = iter(range(1_000_000))


def make_job(
    platform: str,
    user: str,
    text: str = "",
    *,
    kind: JobKind = JobKind.QUESTION,
    collection: str = "docs",
    channel: str = "general",
    thread: str = "",
    key: str | None = None,
    **extra: Any,
) -> Job:
    """A job as an adapter would build it (unique idempotency key unless given)."""
    return Job(
        kind=kind,
        platform=platform,
        collection=collection,
        channel=channel,
        user=user,
        idempotency_key=key if key is not None else f"k{next(_keys)}",
        text=text or f"question from {user}",
        thread=thread,
        reply_to={"channel": channel, "thread": thread, "user": user},
        **extra,
    )
