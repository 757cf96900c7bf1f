"""`BotCore`: the bot without a platform. Adapters submit jobs and get their replies back.

    core = BotCore.from_settings(settings, engine)
    core.register(adapter)            # one per platform
    await core.start()                # recovers jobs a crash left running, starts the worker
    accepted = await core.submit(job) # committed to SQLite before this returns
    ...
    await core.stop()                 # on SIGTERM/SIGINT: bounded, nothing lost

The data flow: platform event → `Job` (committed) → queue → worker → engine (its own thread,
streamed) → reply with citations → history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from adapters.base import Adapter
from bot.errors import FolioError, GenerationCancelled, NotFoundError, PermissionDeniedError
from bot.history import History, HistoryEntry, HistoryLog, build_record
from bot.jobs import Accepted, ErrorOutcome, Job, JobStatus
from bot.migrations import BotDatabase
from bot.ports import AnswerEngine
from bot.queue import JobQueue, SqliteJobQueue
from bot.redis_queue import RedisJobQueue, RedisQueueConfig
from bot.worker import Throughput, Worker
from rag.types import DocumentInfo

if TYPE_CHECKING:
    from bot.history_postgres import PostgresHistory
    from config.settings import Settings
    from rag.postgres import PostgresOptions

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "Folio is restarting; please ask again in a minute."


@dataclass(frozen=True, slots=True)
class CoreOptions:
    """Tunables of the core; `from_settings` fills them from the configuration."""

    max_pending: int = 200
    max_pending_per_user: int = 5
    edit_interval_s: float = 1.0
    history_turns: int = 4  # earlier turns of the conversation passed for follow-ups
    default_eta_s: float = 20.0  # per job, until real run times have been measured
    stop_grace_s: float = 10.0  # how long `stop` lets the current job finish
    cancel_wait_s: float = 3.0  # then how long the engine gets to notice it was cancelled
    ack_timeout_s: float = 10.0
    concurrency: int = 1  # questions answered at once (engine threads); 1 for the local model
    retry_backoff_s: float = 2.0  # × the attempt number, before retrying an unreachable server


class BotCore:
    """Owns the bot database, the queue, the worker and its engine threads."""

    def __init__(
        self,
        engine: AnswerEngine,
        db_path: Path | str,
        options: CoreOptions | None = None,
        *,
        redis: RedisQueueConfig | None = None,  # the shared queue; None = SQLite in db_path
        shared_history: PostgresOptions | None = None,  # None: this node's own, in db_path
    ) -> None:
        self._engine = engine
        self._db_path = db_path
        self.options = options or CoreOptions()
        self._adapters: dict[str, Adapter] = {}
        self._db: BotDatabase | None = None
        self._redis = redis
        self._queue: JobQueue | None = None
        self._history: HistoryLog | None = None
        self._shared_history = shared_history
        self._shared: PostgresHistory | None = None  # the shared history, once started
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = False

    @classmethod
    def from_settings(cls, settings: Settings, engine: AnswerEngine) -> BotCore:
        queue = settings.queue
        options = CoreOptions(
            max_pending=queue.max_pending,
            max_pending_per_user=queue.max_pending_per_user,
            edit_interval_s=queue.edit_interval_s,
            concurrency=settings.generator.concurrency,
            # Until real run times are measured: answers quoting the documents take a fraction
            # of a second, written ones seconds to tens of seconds.
            default_eta_s=2.0 if settings.generator.answer_mode == "evidence" else 20.0,
        )
        redis = None
        if queue.backend == "redis":
            assert settings.redis_url is not None  # the settings refuse redis without a URL
            redis = RedisQueueConfig(
                url=settings.redis_url.get_secret_value(),
                prefix=queue.redis_prefix,
                claim_timeout_s=queue.claim_timeout_s,
                retention_s=queue.redis_retention_days * 86400,
            )
        shared = None
        if settings.store.backend == "postgres":
            from rag.backends import postgres_options

            shared = postgres_options(settings)
        return cls(engine, settings.bot_db, options, redis=redis, shared_history=shared)

    def register(self, adapter: Adapter) -> None:
        """Route jobs of `adapter.platform` to it. Jobs of platforms not registered stay queued."""
        self._adapters[adapter.platform] = adapter
        if self._worker is not None:
            self._worker.wake()

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database, requeue jobs a crash left running, start the worker."""
        if self._worker_task is not None:
            return
        opts = self.options
        self._db = await BotDatabase.open(self._db_path)
        try:
            self._queue = await self._open_queue(self._db)
        except BaseException:
            await self._db.close()
            self._db = None
            raise
        self._history = await self._open_history(self._db)
        await self._queue.recover()
        throughput = Throughput(default_s=opts.default_eta_s, parallel=opts.concurrency)
        for seconds in reversed(await self._queue.recent_durations(20)):
            throughput.add(seconds)
        # The engine's threads: with the local model exactly one, the only one that calls it.
        self._executor = ThreadPoolExecutor(
            max_workers=opts.concurrency, thread_name_prefix="folio-engine"
        )
        self._worker = Worker(
            queue=self._queue,
            history=self._history,
            engine=self._engine,
            executor=self._executor,
            adapters=self._adapters,
            throughput=throughput,
            edit_interval_s=opts.edit_interval_s,
            history_turns=opts.history_turns,
            concurrency=opts.concurrency,
            retry_backoff_s=opts.retry_backoff_s,
        )
        if isinstance(self._queue, RedisJobQueue):  # jobs queued by other processes wake us
            self._queue.on_new_work(self._worker.wake)
        self._worker_task = asyncio.create_task(self._worker.run(), name="folio-worker")
        self._worker_task.add_done_callback(_log_crash)
        self._accepting = True
        logger.info("bot core started (db %s, platforms %s)", self._db_path, sorted(self._adapters))

    async def _open_history(self, db: BotDatabase) -> HistoryLog:
        if self._shared_history is None:
            return History(db)
        from bot.history_postgres import PostgresHistory
        from rag.postgres import PostgresDatabase

        options = self._shared_history
        shared = PostgresHistory(await asyncio.to_thread(PostgresDatabase, options), db)
        await shared.start()  # copies what a previous run could not share, in the background
        self._shared = shared
        return shared

    async def stop(self) -> None:
        """Stop accepting, finish or requeue the current job within a bounded time, close the DB."""
        self._accepting = False
        if self._worker is None or self._worker_task is None:
            return
        opts = self.options
        await self._worker.stop(
            self._worker_task, grace_s=opts.stop_grace_s, cancel_wait_s=opts.cancel_wait_s
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._queue is not None:
            await self._queue.close()
        if self._shared is not None:  # its copying reads bot.sqlite: stopped before it closes
            await self._shared.stop()
            self._shared = None
        if self._db is not None:
            await self._db.close()
        if self._executor is not None:
            # A stuck engine call cannot be interrupted; its job is already back in the queue.
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._worker = self._worker_task = self._executor = None
        self._db = self._queue = self._history = None
        logger.info("bot core stopped")

    async def __aenter__(self) -> BotCore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- what adapters call -----------------------------------------------------------------

    async def submit(self, job: Job) -> Accepted:
        """Queue `job` durably, then tell its adapter where it stands (in the background).

        Raises DuplicateJobError for a redelivered event, QueueFullError over a cap, FolioError
        while shutting down; in every case nothing was queued.
        """
        queue, worker = self._require_started()
        if not self._accepting:
            raise FolioError(SHUTTING_DOWN)
        adapter = self._adapters.get(job.platform)
        if adapter is None:
            raise ValueError(f"no adapter registered for platform {job.platform!r}")
        claim_for = worker.reserve()  # an idle worker's slot: the put may claim the job too
        claimed: Job | None = None
        try:
            placement = await queue.put(job, claim_for=claim_for)
            claimed = placement.claimed
            stored = placement.job
            accepted = Accepted(
                job_id=stored.id,
                position=placement.position,
                eta_s=worker.throughput.eta(placement.position + placement.running),
                job=stored,
            )
            # No await between the commit and these lines: the worker cannot start the job
            # before it knows to wait for the acknowledgement.
            ack = self._spawn(self._acknowledge(adapter, accepted))
            worker.expect_ack(stored.id, ack)
        finally:
            if claim_for:  # the slot is given back, or to the job its put claimed
                worker.take(claimed)
        worker.wake()
        logger.info(
            "job %s queued: %s from %s/%s (position %s)",
            stored.id, stored.kind.value, stored.platform, stored.user, accepted.position,
        )
        return accepted

    async def cancel(
        self, platform: str, user: str, job_id: int | None = None, *, as_admin: bool = False
    ) -> Job:
        """Cancel the user's job `job_id`, or their latest queued or running one.

        `as_admin` (an adapter's admin, for example on the web queue page) may cancel anyone's
        job by its id.

        Returns the job as it was when cancelled. A running answer stops within about a second
        (the job's message ends with "Cancelled."). Raises NotFoundError when there is nothing to
        cancel, PermissionDeniedError for someone else's job, FolioError if it already finished.
        """
        queue, worker = self._require_started()
        if job_id is None:
            job = await queue.latest_active(platform, user)
            if job is None:
                raise NotFoundError("You have nothing queued or running.")
        else:
            found = await queue.get(job_id)
            if found is None:
                raise NotFoundError(f"There is no job {job_id}.")
            job = found
        if job.requester != (platform, user) and not (as_admin and job_id is not None):
            raise PermissionDeniedError(f"Job {job.id} is not yours to cancel.")
        if job.status is JobStatus.PENDING:
            outcome = ErrorOutcome(GenerationCancelled().message)
            record = build_record(job, JobStatus.CANCELLED, outcome)
            if await queue.cancel_pending(job.id, outcome, record):
                if self._history is not None:
                    await self._history.add(record)  # to the shared history too, if any
                await worker.deliver_without_running(job, outcome)
                return job
        if worker.cancel_running(job.id):
            return job
        raise FolioError(f"Job {job.id} has already finished.")

    async def cancel_for_deleted_message(self, platform: str, message_id: str) -> Job | None:
        """The platform says a question's message was deleted: cancel its job, if still active."""
        queue, _ = self._require_started()
        job = await queue.active_for_message(platform, message_id)
        if job is None:
            return None
        try:
            return await self.cancel(platform, job.user, job.id)
        except FolioError:  # finished meanwhile: nothing to cancel
            return None

    async def history(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]:
        """The user's own recent requests, newest first."""
        self._require_started()
        assert self._history is not None
        return await self._history.for_user(platform, user, limit=limit)

    async def all_history(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """Every user's latest questions, newest first (for admins only: the caller checks)."""
        self._require_started()
        assert self._history is not None
        return await self._history.recent(limit=limit)

    async def active_jobs(self) -> list[tuple[Job, int, float]]:
        """Running jobs (position 0) and waiting ones with their fair-order position and ETA."""
        queue, worker = self._require_started()
        entries = await queue.active()
        running = sum(1 for _, position in entries if position == 0)
        return [
            (job, position, worker.throughput.eta(position + running) if position else 0.0)
            for job, position in entries
        ]

    async def original_file(self, collection: str, name: str) -> Path | None:
        """The stored PDF of a document, to open a cited page (None: unknown or not kept).

        A quick read of the document store, so it runs on a plain thread, not behind the job
        the engine thread is working on.
        """
        self._require_started()
        find = getattr(self._engine, "original_file", None)
        if find is None:
            return None
        found: Path | None = await asyncio.to_thread(find, name, collection=collection)
        return found

    async def export_history(self, out: TextIO) -> int:
        """Every logged question and answer as JSONL; returns the number of rows."""
        self._require_started()
        assert self._history is not None
        return await self._history.export_jsonl(out)

    async def documents(self, collection: str) -> list[DocumentInfo]:
        """What is indexed (runs on an engine thread, behind a running job if it has only one)."""
        _, worker = self._require_started()
        return await worker.call_engine(self._engine.documents, collection)

    async def job(self, job_id: int) -> Job | None:
        """A job's stored state (without its attachment)."""
        queue, _ = self._require_started()
        return await queue.get(job_id)

    async def remember_reply(self, job_id: int, updates: Mapping[str, str]) -> None:
        """Store with the job where its adapter posted (merged into `reply_to`), so the process
        that delivers it after a restart, or another node, edits that message instead of
        posting a second one."""
        queue, _ = self._require_started()
        if not await queue.remember_reply(job_id, updates):
            logger.warning("job %s: gone before its reply could be remembered", job_id)

    # ---- internals --------------------------------------------------------------------------

    async def _open_queue(self, db: BotDatabase) -> JobQueue:
        """The configured back end: SQLite in the bot database, or the shared Redis queue."""
        opts = self.options
        if self._redis is None:
            return SqliteJobQueue(
                db, max_pending=opts.max_pending, max_pending_per_user=opts.max_pending_per_user
            )
        return await RedisJobQueue.connect(
            db, self._redis,
            max_pending=opts.max_pending, max_pending_per_user=opts.max_pending_per_user,
        )

    def _require_started(self) -> tuple[JobQueue, Worker]:
        if self._queue is None or self._worker is None:
            raise FolioError(SHUTTING_DOWN)  # stopped, or not started yet
        return self._queue, self._worker

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _acknowledge(adapter: Adapter, accepted: Accepted) -> None:
        try:
            await adapter.acknowledge(accepted.job, accepted.position, accepted.eta_s)
        except Exception:
            logger.exception("job %s: could not acknowledge on %s", accepted.job_id,
                             accepted.job.platform)


def _log_crash(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        exc = task.exception()
        if exc is not None:
            logger.error("the worker stopped unexpectedly", exc_info=exc)
