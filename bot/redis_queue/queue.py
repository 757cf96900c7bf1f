"""`JobQueue` on Redis: one fair queue shared by several Folio processes on several machines.

Why not a Stream with a consumer group: a stream hands out entries in arrival order, and Folio's
order is per user (the least recently served waiting user goes next), with caps, dedupe and
cancel-while-queued; those need their own structures anyway. So the queue is plain Redis keys,
and every state change is one Lua script (atomic on the server). The consumer-group idea that
matters is kept: a running job has an owner and a deadline, the owner pushes the deadline on
(heartbeats), and a job whose owner went quiet goes back in line for anyone (as XAUTOCLAIM does).

Keys, under `<prefix>:` (`<who>` is `<platform>|<user>`):

    seq                       job ids (INCR), raised at start above this node's SQLite job ids
    job:<id>                  hash: the job, its attachment bytes until it finishes, status,
                              owner token, outcome, the adapter's additions to `reply_to`;
                              expires `retention` after it finishes
    idem:<platform>:<key>     → job id, written by the script that stores the job (dedupe)
    pending                   zset of every pending id (the global cap)
    user:<who>                zset of that user's pending ids, by id (FIFO; the per-user cap)
    waiting                   set of users with pending jobs
    turns, turn_seq           when each user was last served (the round-robin)
    running                   zset id → deadline in ms; heartbeats push it on
    active:<who>, msg:<platform>|<message id>    lookups for cancel and deleted messages
    undelivered               zset id → delivery lease deadline, until `mark_delivered`
    durations                 recent run times of answered questions (the ETA)
    channel <prefix>:work     "there may be work": new, requeued or timed-out jobs

Order: `claim` picks the waiting user (of the caller's platforms) served least recently, ties to
the older first job, and that user's oldest job: exactly `bot.queue.fair_order`, decided in one
script over the shared state, so it holds across processes. A job that timed out or was requeued
goes back to its place at the front of its user's line. Times come from the Redis clock (`TIME`
inside the scripts), so skewed machine clocks cannot make one node take another's job early.

What stays per node: the history. The node that finishes a job writes its history row (and the
stub `jobs` row the row's foreign key needs) in its own SQLite file, right after the Redis script
decided the job (see `complete`). Durability is Redis's: "committed before the platform hears
queued" survives a Redis crash only with `appendonly yes` (and a power cut only with
`appendfsync always`, which is what the SQLite queue's synchronous=FULL gives).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from bot.errors import DuplicateJobError, FolioError, QueueFullError
from bot.history import HistoryRecord, insert_record
from bot.jobs import (
    Job,
    JobStatus,
    Outcome,
    Placement,
    outcome_from_json,
    outcome_to_json,
)
from bot.migrations import BotDatabase
from bot.queue import fair_order
from bot.redis_queue.config import DELIVERY_LEASE_MIN_S, QueueUnavailableError, RedisQueueConfig
from bot.redis_queue.fields import LIGHT_FIELDS, as_text, job_fields, job_from
from bot.redis_queue.scripts import load_scripts

logger = logging.getLogger(__name__)


def _connect(config: RedisQueueConfig) -> Any:
    """A redis-py asyncio client (lazily imported: only the redis back end needs it)."""
    try:
        from redis.asyncio import Redis
    except ImportError as exc:
        raise QueueUnavailableError(
            'queue.backend = "redis" needs the redis package: run scripts/setup '
            "(pip install 'redis>=5')."
        ) from exc
    return Redis.from_url(
        config.url,
        socket_connect_timeout=5.0,
        socket_timeout=15.0,
        health_check_interval=30,
    )


class RedisJobQueue:
    """`JobQueue` on Redis, shared by every process with the same URL and prefix.

    Exactly once: `claim` gives the job an owner token (this process's consumer id and the
    attempt number); only the script that still finds that token can finish it, so a job taken
    over from a process that went quiet is finished once, by whoever holds it now. Build it with
    `connect`, which also starts the heartbeats and the listener for other processes' work.
    """

    def __init__(
        self,
        client: Any,  # redis.asyncio.Redis; its results are untyped
        db: BotDatabase,
        config: RedisQueueConfig,
        *,
        max_pending: int,
        max_pending_per_user: int,
    ) -> None:
        self._redis = client
        self._db = db
        self._config = config
        self._max_pending = max_pending
        self._max_per_user = max_pending_per_user
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._timeout_ms = int(config.claim_timeout_s * 1000)
        lease_s = config.delivery_lease_s
        if lease_s is None:
            lease_s = max(config.claim_timeout_s, DELIVERY_LEASE_MIN_S)
        self._lease_ms = int(lease_s * 1000)
        self._retention_s = max(1, int(config.retention_s))
        self._channel = f"{config.prefix}:work"
        self._held: dict[int, str] = {}  # job id → owner token, for the jobs this process runs
        self._on_new_work: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._scripts = {
            name: client.register_script(source) for name, source in load_scripts().items()
        }

    @classmethod
    async def connect(
        cls,
        db: BotDatabase,
        config: RedisQueueConfig,
        *,
        max_pending: int,
        max_pending_per_user: int,
        background: bool = True,
    ) -> RedisJobQueue:
        """Connect (or raise QueueUnavailableError), then start heartbeats and listening.

        `background=False` leaves the heartbeats off: the tests use it to play a process that
        froze while holding a job.
        """
        client = _connect(config)
        queue = cls(
            client, db, config, max_pending=max_pending, max_pending_per_user=max_pending_per_user
        )
        try:
            await client.ping()
            await queue._raise_ids_above_local()
        except Exception as exc:
            await client.aclose()
            if isinstance(exc, FolioError):
                raise
            reason = config.scrub(f"{type(exc).__name__}: {exc}")
            raise QueueUnavailableError(
                f"Can't reach the Redis queue at {config.where} ({reason})."
            ) from None
        await queue._warn_if_not_persistent()
        if background:
            queue._tasks = [
                asyncio.create_task(queue._keep_alive(), name="folio-redis-heartbeat"),
                asyncio.create_task(queue._listen(), name="folio-redis-listen"),
            ]
        logger.info(
            "redis queue at %s (prefix %r) as consumer %s", config.where, config.prefix,
            queue.consumer,
        )
        return queue

    def on_new_work(self, callback: Callable[[], None]) -> None:
        """Call `callback` (the worker's `wake`) whenever another process may have left work:
        a job queued or requeued anywhere, or a running job whose owner went quiet."""
        self._on_new_work = callback

    async def close(self) -> None:
        """Stop heartbeats and listening, and disconnect. Jobs still held time out elsewhere."""
        self._closed = True  # redis-py may turn a cancellation into a connection error
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            if stuck:
                logger.warning("redis queue: %d background task(s) did not stop", len(stuck))
        self._tasks = []
        await self._redis.aclose()

    # ---- JobQueue ---------------------------------------------------------------------------

    async def put(self, job: Job, *, claim_for: Collection[str] = ()) -> Placement:
        # Never claims with the put: any process sharing the queue may be the one to run it.
        try:
            reply = await self._run(
                "put", job.platform, job.idempotency_key, job.user, job.message_id,
                self._max_pending, self._max_per_user, *job_fields(job),
            )
        except FolioError:
            raise
        except Exception as exc:  # the user gets a line; nothing was stored
            logger.warning("redis queue: could not store a job: %s", self._config.scrub(str(exc)))
            raise QueueUnavailableError(
                "The queue is unavailable right now; please try again in a minute."
            ) from None
        verdict = as_text(reply[0])
        if verdict == "duplicate":
            raise DuplicateJobError(f"Already received that message (job {as_text(reply[1])}).")
        if verdict == "full":
            raise QueueFullError(
                f"The queue is full ({self._max_pending} requests waiting); "
                "please try again in a few minutes."
            )
        if verdict == "mine":
            raise QueueFullError(
                f"You already have {int(reply[1])} requests waiting; wait for an answer "
                "or cancel one first."
            )
        job_id, position, running = int(reply[1]), int(reply[2]), int(reply[3])
        stored = replace(job, id=job_id, status=JobStatus.PENDING, created_at=float(reply[4]))
        return Placement(job=stored, position=position, running=running)

    async def claim(self, platforms: Collection[str]) -> Job | None:
        if not platforms:
            return None
        reply = await self._run("claim", self._timeout_ms, self.consumer, *platforms)
        reaped = reply[0]
        if reaped:
            logger.warning(
                "redis queue: put %d job(s) back in line, their process went quiet: %s",
                len(reaped), [int(i) for i in reaped],
            )
        if len(reply) < 3:
            return None
        job_id, flat = int(reply[1]), reply[2]
        fields = {as_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        self._held[job_id] = as_text(fields["token"])
        return job_from(job_id, fields, with_attachment=True)

    async def complete(
        self, job_id: int, status: JobStatus, outcome: Outcome, record: HistoryRecord | None
    ) -> bool:
        """Finish the job in Redis if this process still owns it, then log it locally.

        The Redis script is the decisive, exactly-once step: it checks the owner token and
        finishes the job in one go. The node's history row (its own SQLite) is written right
        after. A crash between the two loses that history row but never answers twice; the other
        order could log an answer that another process then generates again.
        """
        token = self._held.pop(job_id, None)
        if token is None:
            logger.warning("job %s is not running in this process; left unchanged", job_id)
            return False
        finished = await self._run(
            "complete", job_id, token, status.value, outcome_to_json(outcome),
            getattr(outcome, "message", ""), self._retention_s, self._lease_ms,
        )
        if not finished:
            logger.warning("job %s was taken over by another process; its result is dropped",
                           job_id)
            return False
        await self._write_local(job_id, record)
        return True

    async def cancel_pending(
        self, job_id: int, outcome: Outcome, record: HistoryRecord | None
    ) -> bool:
        cancelled = await self._run(
            "cancel_pending", job_id, outcome_to_json(outcome), getattr(outcome, "message", ""),
            self._retention_s, self._lease_ms,
        )
        if not cancelled:
            return False
        await self._write_local(job_id, record)
        return True

    async def requeue(self, job_id: int, *, crashed: bool = False) -> None:
        token = self._held.pop(job_id, None)
        if token is not None:
            await self._run("requeue", job_id, token, "1" if crashed else "0")

    async def recover(self) -> list[int]:
        """Put back in line the running jobs whose process went quiet (crashed) long enough.

        Unlike SQLite, jobs other processes are running now are left alone, so jobs this node ran
        before a crash wait out the claim timeout like anyone else's.
        """
        ids = [int(i) for i in await self._run("recover")]
        if ids:
            logger.warning("requeued %d job(s) whose process stopped: %s", len(ids), ids)
        return ids

    async def get(self, job_id: int) -> Job | None:
        values = await self._redis.hmget(self._job_key(job_id), LIGHT_FIELDS)
        if values[0] is None:
            return None
        return job_from(job_id, dict(zip(LIGHT_FIELDS, values, strict=True)),
                         with_attachment=False)

    async def latest_active(self, platform: str, user: str) -> Job | None:
        ids = await self._redis.zrevrange(self._key(f"active:{platform}|{user}"), 0, 0)
        return await self.get(int(ids[0])) if ids else None

    async def active_for_message(self, platform: str, message_id: str) -> Job | None:
        if not message_id:
            return None
        ids = await self._redis.zrevrange(self._key(f"msg:{platform}|{message_id}"), 0, -1)
        for raw in ids:
            job = await self.get(int(raw))
            if job is not None and job.status in (JobStatus.PENDING, JobStatus.RUNNING):
                return job
        return None

    async def undelivered(self, platforms: Collection[str]) -> list[tuple[Job, Outcome]]:
        """Finished jobs whose finisher died before delivering them (their delivery lease, one
        claim timeout, ran out). Taking them renews the lease, so two processes starting at
        once do not both deliver."""
        if not platforms:
            return []
        found: list[tuple[Job, Outcome]] = []
        for raw in await self._run("undelivered", self._lease_ms, *platforms):
            job_id = int(raw)
            values = await self._redis.hmget(self._job_key(job_id), (*LIGHT_FIELDS, "result"))
            if values[0] is None or values[-1] is None:
                continue
            job = job_from(job_id, dict(zip(LIGHT_FIELDS, values[:-1], strict=True)),
                            with_attachment=False)
            found.append((job, outcome_from_json(as_text(values[-1]))))
        return sorted(found, key=lambda pair: pair[0].id)

    async def mark_delivered(self, job_id: int) -> None:
        await self._run("mark_delivered", job_id)

    async def remember_reply(self, job_id: int, updates: Mapping[str, str]) -> bool:
        if not updates:
            return await self.get(job_id) is not None
        pairs = [x for key, value in updates.items() for x in (key, value)]
        return bool(await self._run("remember_reply", job_id, *pairs))

    async def recent_durations(self, limit: int) -> list[float]:
        if limit <= 0:
            return []
        return [float(x) for x in await self._redis.lrange(self._key("durations"), 0, limit - 1)]

    async def active(self) -> list[tuple[Job, int]]:
        """Read without a script (a display snapshot): the order is `fair_order` over the same
        pending set and turn counters the claim script uses."""
        running_ids = [int(i) for i in await self._redis.zrange(self._key("running"), 0, -1)]
        pending_ids = [int(i) for i in await self._redis.zrange(self._key("pending"), 0, -1)]
        turns = {
            as_text(who): int(seq)
            for who, seq in (await self._redis.hgetall(self._key("turns"))).items()
        }
        jobs = {i: job for i in {*running_ids, *pending_ids} if (job := await self.get(i))}
        last_seq = {
            tuple(who.split("|", 1)): seq for who, seq in turns.items() if "|" in who
        }
        order = fair_order(
            [(i, jobs[i].requester) for i in pending_ids if i in jobs],
            last_seq,  # type: ignore[arg-type]
        )
        return [(jobs[i], 0) for i in sorted(running_ids) if i in jobs] + [
            (jobs[i], n) for n, i in enumerate(order, start=1)
        ]

    # ---- internals --------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self._config.prefix}:{name}"

    def _job_key(self, job_id: int) -> str:
        return self._key(f"job:{job_id}")

    async def _run(self, script: str, *args: Any) -> Any:
        return await self._scripts[script](args=[self._config.prefix, *args])

    async def _write_local(self, job_id: int, record: HistoryRecord | None) -> None:
        """This node's history row (delivery is tracked in Redis; the stub `jobs` row the
        history row needs names the Redis job, so a switch back to SQLite never redelivers it)."""
        if record is None:
            return
        try:
            async with self._db.transaction() as db:
                await insert_record(db, record, stub_key=f"redis:{self._config.prefix}:{job_id}")
        except Exception:
            logger.exception("job %s: finished, but this node could not log it in its history",
                             job_id)

    async def _raise_ids_above_local(self) -> None:
        """Redis ids must not collide with job ids already in this node's SQLite file."""
        async with self._db.reading() as db, db.execute(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM jobs), 0),"
            " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0))"
        ) as cur:
            row = await cur.fetchone()
        await self._run("raise_seq", int(row[0]) if row is not None else 0)

    async def _warn_if_not_persistent(self) -> None:
        """A queue in a Redis that keeps nothing on disk loses every job when Redis restarts."""
        try:
            config = await self._redis.config_get("appendonly")
        except Exception:  # managed Redis often forbids CONFIG: nothing to check
            return
        value = config.get("appendonly", config.get(b"appendonly", b""))
        if (value.decode() if isinstance(value, bytes) else str(value)) == "no":
            logger.warning(
                "Redis at %s has appendonly off: jobs queued since its last snapshot are lost "
                "if Redis restarts (set appendonly yes)", self._config.where,
            )

    async def _keep_alive(self) -> None:
        """Push on the deadlines of this process's running jobs, and wake the worker when a
        claim could find something another process left (a timed-out job, a missed message)."""
        while not self._closed:
            await asyncio.sleep(self._config.tick_s)
            try:
                await self._heartbeat()
                if self._on_new_work is not None and await self._run("has_work"):
                    self._on_new_work()
            except Exception as exc:  # Redis unreachable for a moment: try at the next tick
                logger.warning("redis queue: heartbeat failed (%s)", self._config.scrub(str(exc)))

    async def _heartbeat(self) -> None:
        held = dict(self._held)
        if not held:
            return
        pairs = [x for job_id, token in held.items() for x in (job_id, token)]
        for raw in await self._run("heartbeat", self._timeout_ms, *pairs):
            job_id = int(raw)
            if self._held.get(job_id) == held[job_id]:  # not finished here meanwhile
                del self._held[job_id]
                logger.warning("job %s: another process took it over (a heartbeat came late)",
                               job_id)

    async def _listen(self) -> None:
        """Wake the worker on every "there may be work" message from any process."""
        while not self._closed:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._wake()  # whatever was published while we were not listening
                while not self._closed:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self._config.tick_s * 4
                    )
                    if message is not None:
                        self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                logger.warning(
                    "redis queue: lost the work channel (%s); reconnecting",
                    self._config.scrub(str(exc)),
                )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(1.0)

    def _wake(self) -> None:
        if self._on_new_work is not None:
            self._on_new_work()

