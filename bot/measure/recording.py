"""Answers through the real `BotCore`, queue and worker, with an adapter that records when
each call arrives instead of posting.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bot.jobs import Job, JobKind
from bot.measure.plan import BenchPlan

if TYPE_CHECKING:
    from bot.core import BotCore
    from config.settings import Settings
    from rag.engine import RagEngine
    from rag.types import Answer


PLATFORM = "bench"
ANSWER_TIMEOUT_S = 300.0


def forget_query_cache(engine: RagEngine) -> None:
    """Empty the embedder's query cache, so every measured question is embedded for real."""
    forget = getattr(engine.embedder, "forget_cached_queries", None)
    if callable(forget):
        forget()


# --- the real worker path, with a recording adapter ------------------------------------------


@dataclass
class Trace:
    """What the adapter saw of one job (perf_counter seconds)."""

    submitted: float
    acknowledged: float | None = None
    first_partial: float | None = None
    engine_done: float | None = None  # when the engine returned the final text
    finished: float | None = None
    answer: Answer | None = None
    error: str | None = None
    job: Job | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StampedEngine:
    """The engine as the worker sees it, noting when each answer left it, so the bench can time
    "engine final text -> platform final edit" (the worker's history write, job completion and
    delivery) on the real worker path."""

    def __init__(self, engine: RagEngine) -> None:
        self._engine = engine
        self.finished_at: dict[int, tuple[Answer, float]] = {}

    @property
    def model_name(self) -> str:
        return self._engine.model_name

    def answer(self, question: str, **kwargs: Any) -> Answer:
        answer = self._engine.answer(question, **kwargs)
        # Keyed by identity (the worker hands the same object to the adapter); holding the
        # answer keeps the id from being reused before the adapter looks it up.
        self.finished_at[id(answer)] = (answer, time.perf_counter())
        return answer

    def ingest_bytes(self, name: str, data: bytes, **kwargs: Any) -> Any:
        return self._engine.ingest_bytes(name, data, **kwargs)

    def documents(self, collection: str) -> Any:
        return self._engine.documents(collection)

    def forget(self, name: str, **kwargs: Any) -> Any:
        return self._engine.forget(name, **kwargs)


class RecordingAdapter:
    """An `adapters.base.Adapter` that records when each call arrives instead of posting."""

    platform = PLATFORM

    def __init__(self) -> None:
        self.traces: dict[str, Trace] = {}
        # id(answer) -> when the engine returned it (set by StampedEngine)
        self.engine_done: dict[int, tuple[Answer, float]] = {}

    async def submit(self, core: BotCore, job: Job) -> Trace:
        trace = self.traces[job.idempotency_key] = Trace(time.perf_counter())
        await core.submit(job)
        return trace

    def _trace(self, job: Job) -> Trace:
        return self.traces[job.idempotency_key]

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        trace = self._trace(job)
        if trace.acknowledged is None:
            trace.acknowledged = time.perf_counter()

    async def post_status(self, job: Job, text: str) -> None:
        return None

    async def stream_partial(self, job: Job, text: str) -> None:
        trace = self._trace(job)
        if trace.first_partial is None:
            trace.first_partial = time.perf_counter()

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        return None

    async def post_answer(self, job: Job, answer: Answer) -> None:
        self._finish(job, answer=answer)

    async def post_ingest_report(self, job: Job, report: Any) -> None:
        self._finish(job, error="unexpected ingest report")

    async def post_notice(self, job: Job, text: str) -> None:
        self._finish(job, error=text)

    async def post_error(self, job: Job, message: str) -> None:
        self._finish(job, error=message)

    def _finish(self, job: Job, *, answer: Answer | None = None, error: str | None = None) -> None:
        trace = self._trace(job)
        trace.finished = time.perf_counter()
        if answer is not None and id(answer) in self.engine_done:
            trace.engine_done = self.engine_done.pop(id(answer))[1]
        if trace.first_partial is None and answer is not None:
            # A short answer can finish before the first throttled edit: then the final
            # message is the first text the user sees.
            trace.first_partial = trace.finished
        trace.answer, trace.error, trace.job = answer, error, job
        trace.done.set()


def _question_job(key: str, user: str, text: str, collection: str) -> Job:
    # One thread per question: no earlier turns are added to the prompt as follow-up history.
    return Job(kind=JobKind.QUESTION, platform=PLATFORM, collection=collection, channel="bench",
               user=user, idempotency_key=key, text=text, thread=key)


async def serve(
    engine: RagEngine,
    settings: Settings,
    plan: BenchPlan,
    time_raw: Callable[[str, int], dict[str, Any]] | None,
) -> dict[str, Any]:
    from bot.core import BotCore, CoreOptions

    queue = settings.queue
    concurrency = settings.generator.concurrency
    per_user = math.ceil(len(plan.queued) / plan.users)
    options = CoreOptions(
        max_pending=max(queue.max_pending, len(plan.queued)),
        max_pending_per_user=max(queue.max_pending_per_user, per_user),
        edit_interval_s=queue.edit_interval_s,
        concurrency=concurrency,
    )
    adapter = RecordingAdapter()
    stamped = StampedEngine(engine)
    adapter.engine_done = stamped.finished_at
    core = BotCore(stamped, settings.bot_db, options)
    core.register(adapter)
    await core.start()
    try:
        sequential = []
        raw_runs = []
        for number, question in enumerate(plan.sequential, start=1):
            job = _question_job(f"seq-{number}", "bench-solo", question, plan.collection)
            trace = await adapter.submit(core, job)
            await asyncio.wait_for(trace.done.wait(), ANSWER_TIMEOUT_S)
            sequential.append(_sequential_record(question, trace))
            if time_raw is not None and sequential[-1]["tokens"]:  # the engine is idle now
                raw_runs.append(await asyncio.to_thread(time_raw, question, sequential[-1]["tokens"]))
            print(f"[bench] answer {number}/{len(plan.sequential)}: "
                  f"{sequential[-1]['answer_s']:.2f}s, {sequential[-1]['tokens']} tokens",
                  file=sys.stderr, flush=True)
        forget_query_cache(engine)
        queued = await _queue_burst(core, adapter, plan, "queue")
    finally:
        await core.stop()
    serial: dict[str, Any] | None = None
    if concurrency > 1:
        # The same burst again one at a time, through the same (warm) server: the baseline of
        # the gain from parallel requests.
        forget_query_cache(engine)
        serial_core = BotCore(stamped, settings.bot_db, replace(options, concurrency=1))
        serial_core.register(adapter)
        await serial_core.start()
        try:
            serial = await _queue_burst(serial_core, adapter, plan, "serial")
        finally:
            await serial_core.stop()
    return {"sequential": sequential, "raw_runs": raw_runs, "queue": queued,
            "queue_serial": serial, "concurrency": concurrency,
            "backend": settings.generator.backend,
            "edit_interval_s": queue.edit_interval_s,
            "generator_threads": settings.generator.threads}


async def _queue_burst(
    core: BotCore, adapter: RecordingAdapter, plan: BenchPlan, prefix: str
) -> dict[str, Any]:
    """Submit every queued question at once (from `plan.users` users); wait for all replies."""
    jobs = [
        _question_job(f"{prefix}-{i}", f"bench-user-{i % plan.users}", text, plan.collection)
        for i, text in enumerate(plan.queued)
    ]
    started = time.perf_counter()
    traces = await asyncio.gather(*(adapter.submit(core, job) for job in jobs))
    waiting = [asyncio.create_task(t.done.wait()) for t in traces]
    await asyncio.wait(waiting, timeout=ANSWER_TIMEOUT_S * len(traces))
    for task in waiting:
        task.cancel()
    return _queue_record(traces, started)


def _sequential_record(question: str, trace: Trace) -> dict[str, Any]:
    answer = trace.answer
    assert trace.finished is not None
    timings = answer.timings if answer is not None else None
    return {
        "question": question,
        "error": trace.error,
        "abstained": answer.abstained if answer is not None else None,
        "answer_s": trace.finished - trace.submitted,
        "ttft_s": None if trace.first_partial is None else trace.first_partial - trace.submitted,
        "tokens": answer.tokens if answer is not None else 0,
        "prompt_tokens": answer.prompt_tokens if answer is not None else 0,
        "retrieval_s": timings.retrieval if timings else None,
        "first_token_s": timings.first_token if timings else None,
        "generation_s": timings.generation if timings else None,
        "engine_s": timings.total if timings else None,
        "final_edit_s": (
            None if trace.engine_done is None else trace.finished - trace.engine_done
        ),
    }


def _queue_record(traces: Sequence[Trace], started: float) -> dict[str, Any]:
    finished = [t for t in traces if t.finished is not None]
    waits = [
        t.job.started_at - t.job.created_at
        for t in finished
        if t.job is not None and t.job.started_at is not None and t.job.created_at
    ]
    return {
        "submitted": len(traces),
        "answered": sum(1 for t in finished if t.answer is not None),
        "abstained": sum(1 for t in finished if t.answer is not None and t.answer.abstained),
        "failed": [t.error for t in finished if t.error is not None],
        "total_s": max((t.finished or started for t in traces), default=started) - started,
        "waits_s": waits,
        "ack_ms": [(t.acknowledged - t.submitted) * 1000 for t in traces if t.acknowledged],
    }
