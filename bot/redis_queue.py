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
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from bot.errors import DuplicateJobError, FolioError, QueueFullError
from bot.history import HistoryRecord, insert_record
from bot.jobs import (
    Attachment,
    Job,
    JobKind,
    JobStatus,
    Outcome,
    Placement,
    outcome_from_json,
    outcome_to_json,
)
from bot.migrations import BotDatabase
from bot.queue import fair_order

logger = logging.getLogger(__name__)

DELIVERY_LEASE_MIN_S = 300.0


class QueueUnavailableError(FolioError):
    """Redis could not be reached (at start, or when a new job was to be stored)."""


@dataclass(frozen=True, slots=True)
class RedisQueueConfig:
    """Where the shared queue lives and how long a silent consumer keeps its jobs."""

    url: str = field(repr=False)  # may carry a password: never logged, see `where`
    prefix: str = "folio"
    claim_timeout_s: float = 60.0
    retention_s: float = 7 * 86400.0
    # How long a finished job's reply belongs to the process that finished it: longer than a
    # final reply can take while the platform is down (the adapters retry it for up to 3
    # minutes), so no other process sends the same reply meanwhile. None = the larger of
    # claim_timeout_s and DELIVERY_LEASE_MIN_S.
    delivery_lease_s: float | None = None

    @property
    def where(self) -> str:
        """The URL without its credentials, for logs and error messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def scrub(self, text: str) -> str:
        """`text` with the URL's password blanked out (for messages built from exceptions)."""
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    @property
    def tick_s(self) -> float:
        """How often running jobs are heartbeated and idle workers look for timed-out jobs."""
        return min(5.0, max(0.05, self.claim_timeout_s / 4))


# ---- the scripts ------------------------------------------------------------------------------
# Every script gets the key prefix as ARGV[1]. Ids are decimal strings; times are ms integers
# internally and seconds (floats) in the job hash, as `Job` has them.

_COMMON = """
local P = ARGV[1]
local RUNNING, PENDING, WAITING, TURNS = P..':running', P..':pending', P..':waiting', P..':turns'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function job_key(id) return P..':job:'..id end

local function requester(id)
  local f = redis.call('HMGET', job_key(id), 'platform', 'user')
  return f[1]..'|'..f[2]
end

local function leave_line(id, who)
  redis.call('ZREM', PENDING, id)
  local line = P..':user:'..who
  redis.call('ZREM', line, id)
  if redis.call('ZCARD', line) == 0 then redis.call('SREM', WAITING, who) end
end

local function back_in_line(id)
  local who = requester(id)
  redis.call('HSET', job_key(id), 'status', 'pending')
  redis.call('HDEL', job_key(id), 'started_at', 'token')
  redis.call('ZREM', RUNNING, id)
  redis.call('ZADD', PENDING, id, id)
  redis.call('ZADD', P..':user:'..who, id, id)
  redis.call('SADD', WAITING, who)
end

local function reap(now)
  local expired = redis.call('ZRANGEBYSCORE', RUNNING, '-inf', now)
  for _, id in ipairs(expired) do
    redis.call('HINCRBY', job_key(id), 'crashes', 1)  -- its process died with it
    back_in_line(id)
  end
  if #expired > 0 then redis.call('PUBLISH', P..':work', 'requeued') end
  return expired
end

local function finish(id, status, result, err, now, retention_s, lease_ms)
  local k = job_key(id)
  local f = redis.call('HMGET', k, 'platform', 'user', 'kind', 'started_at', 'message_id',
                       'idempotency_key')
  redis.call('HSET', k, 'status', status, 'finished_at', now / 1000, 'result', result,
             'error', err)
  redis.call('HDEL', k, 'attachment', 'token')
  redis.call('ZREM', RUNNING, id)
  redis.call('ZREM', P..':active:'..f[1]..'|'..f[2], id)
  redis.call('ZADD', P..':undelivered', now + lease_ms, id)
  if status == 'done' and f[3] == 'question' and f[4] then
    redis.call('LPUSH', P..':durations', now / 1000 - tonumber(f[4]))
    redis.call('LTRIM', P..':durations', 0, 199)
  end
  redis.call('EXPIRE', k, retention_s)
  redis.call('EXPIRE', P..':idem:'..f[1]..':'..f[6], retention_s)
  if f[5] ~= '' then redis.call('EXPIRE', P..':msg:'..f[1]..'|'..f[5], retention_s) end
end
"""

# ARGV: prefix, platform, idempotency key, user, message id, max pending, max per user,
# then the job's field/value pairs.
_PUT = """
local platform, idem, user, message = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local idem_key = P..':idem:'..platform..':'..idem
local existing = redis.call('GET', idem_key)
if existing then return {'duplicate', existing} end
local pending = redis.call('ZCARD', PENDING)
if pending >= tonumber(ARGV[6]) then return {'full', pending} end
local who = platform..'|'..user
local line = P..':user:'..who
local mine = redis.call('ZCARD', line)
if mine >= tonumber(ARGV[7]) then return {'mine', mine} end
local id = redis.call('INCR', P..':seq')
local k = job_key(id)
redis.call('HSET', k, unpack(ARGV, 8))
redis.call('HSET', k, 'status', 'pending', 'created_at', now_ms() / 1000, 'attempts', 0)
redis.call('SET', idem_key, id)
redis.call('ZADD', PENDING, id, id)
redis.call('ZADD', line, id, id)
redis.call('SADD', WAITING, who)
redis.call('ZADD', P..':active:'..who, id, id)
if message ~= '' then redis.call('ZADD', P..':msg:'..platform..'|'..message, id, id) end
-- Its place in the fair order: this is the user's turn-th job; users ahead in the rotation get
-- up to turn jobs in before it, users behind up to turn - 1.
local turn = mine + 1
local my_seq = tonumber(redis.call('HGET', TURNS, who) or '0')
local my_first = tonumber(redis.call('ZRANGE', line, 0, 0)[1])
local position = turn
for _, other in ipairs(redis.call('SMEMBERS', WAITING)) do
  if other ~= who then
    local other_line = P..':user:'..other
    local first = tonumber(redis.call('ZRANGE', other_line, 0, 0)[1])
    if first then
      local n = redis.call('ZCARD', other_line)
      local seq = tonumber(redis.call('HGET', TURNS, other) or '0')
      if seq < my_seq or (seq == my_seq and first < my_first) then
        position = position + math.min(n, turn)
      else
        position = position + math.min(n, turn - 1)
      end
    end
  end
end
redis.call('PUBLISH', P..':work', 'new')
return {'ok', id, position, redis.call('ZCARD', RUNNING), redis.call('HGET', k, 'created_at')}
"""

# ARGV: prefix, claim timeout ms, consumer id, platforms...
# Returns {ids put back in line because their owner went quiet[, claimed id, its hash]}.
_CLAIM = """
local now = now_ms()
local reaped = reap(now)
local allowed = {}
for i = 4, #ARGV do allowed[ARGV[i]] = true end
local best, best_seq, best_first, best_id
for _, who in ipairs(redis.call('SMEMBERS', WAITING)) do
  if allowed[string.match(who, '^([^|]*)|')] then
    local head = redis.call('ZRANGE', P..':user:'..who, 0, 0)[1]
    if head then
      local first, seq = tonumber(head), tonumber(redis.call('HGET', TURNS, who) or '0')
      if best == nil or seq < best_seq or (seq == best_seq and first < best_first) then
        best, best_seq, best_first, best_id = who, seq, first, head
      end
    end
  end
end
if best == nil then return {reaped} end
local id = best_id
leave_line(id, best)
local k = job_key(id)
local attempts = redis.call('HINCRBY', k, 'attempts', 1)
redis.call('HSET', k, 'status', 'running', 'started_at', now / 1000,
           'token', ARGV[3]..'#'..attempts)
redis.call('ZADD', RUNNING, now + tonumber(ARGV[2]), id)
redis.call('HSET', TURNS, best, redis.call('INCR', P..':turn_seq'))
return {reaped, id, redis.call('HGETALL', k)}
"""

# ARGV: prefix, id, token, status, result, error, retention s, delivery lease ms
_COMPLETE = """
local id = ARGV[2]
local f = redis.call('HMGET', job_key(id), 'status', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
finish(id, ARGV[4], ARGV[5], ARGV[6], now_ms(), tonumber(ARGV[7]), tonumber(ARGV[8]))
return 1
"""

# ARGV: prefix, id, result, error, retention s, delivery lease ms
_CANCEL_PENDING = """
local id = ARGV[2]
local f = redis.call('HMGET', job_key(id), 'status', 'platform', 'user')
if f[1] ~= 'pending' then return 0 end
leave_line(id, f[2]..'|'..f[3])
finish(id, 'cancelled', ARGV[3], ARGV[4], now_ms(), tonumber(ARGV[5]), tonumber(ARGV[6]))
return 1
"""

# ARGV: prefix, id, token, 1 if the attempt ended in a crash
_REQUEUE = """
local f = redis.call('HMGET', job_key(ARGV[2]), 'status', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
if ARGV[4] == '1' then redis.call('HINCRBY', job_key(ARGV[2]), 'crashes', 1) end
back_in_line(ARGV[2])
redis.call('PUBLISH', P..':work', 'requeued')
return 1
"""

# ARGV: prefix, claim timeout ms, then id, token pairs. Returns the ids no longer ours.
_HEARTBEAT = """
local deadline = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local f = redis.call('HMGET', job_key(ARGV[i]), 'status', 'token')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('ZADD', RUNNING, 'XX', deadline, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

_RECOVER = """
return reap(now_ms())
"""

# ARGV: prefix. 1 if a claim could find something: a pending job, or a running one timed out.
_HAS_WORK = """
if redis.call('ZCARD', PENDING) > 0 then return 1 end
if #redis.call('ZRANGEBYSCORE', RUNNING, '-inf', now_ms(), 'LIMIT', 0, 1) > 0 then return 1 end
return 0
"""

# ARGV: prefix, lease ms, platforms... Takes the delivery lease of every finished, undelivered
# job of these platforms whose lease ran out (its finisher died before delivering it).
_UNDELIVERED = """
local now = now_ms()
local allowed = {}
for i = 3, #ARGV do allowed[ARGV[i]] = true end
local taken = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P..':undelivered', '-inf', now)) do
  local platform = redis.call('HGET', job_key(id), 'platform')
  if not platform then
    redis.call('ZREM', P..':undelivered', id)
  elseif allowed[platform] then
    redis.call('ZADD', P..':undelivered', now + tonumber(ARGV[2]), id)
    taken[#taken + 1] = id
  end
end
return taken
"""

# ARGV: prefix, id
_MARK_DELIVERED = """
redis.call('ZREM', P..':undelivered', ARGV[2])
if redis.call('EXISTS', job_key(ARGV[2])) == 1 then
  redis.call('HSET', job_key(ARGV[2]), 'delivered_at', now_ms() / 1000)
end
return 1
"""

# ARGV: prefix, id, then key, value pairs. The adapter's additions to `reply_to` (such as the
# status message it posted) are kept in their own field, `reply_patch`, merged over `reply_to` when
# the job is read: its values are strings, which cjson round-trips exactly (it would round the
# floats `reply_to` may hold to 14 digits). A job that is gone is not recreated.
_REMEMBER_REPLY = """
local k = job_key(ARGV[2])
if redis.call('EXISTS', k) == 0 then return 0 end
local raw = redis.call('HGET', k, 'reply_patch')
local patch = {}
if raw then patch = cjson.decode(raw) end
for i = 3, #ARGV, 2 do patch[ARGV[i]] = ARGV[i + 1] end
redis.call('HSET', k, 'reply_patch', cjson.encode(patch))
return 1
"""

# ARGV: prefix, lowest allowed last id
_RAISE_SEQ = """
local floor = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', P..':seq') or '0')
if current < floor then redis.call('SET', P..':seq', floor) end
return math.max(current, floor)
"""

_LIGHT_FIELDS = (
    "kind", "status", "platform", "collection", "channel", "thread", "user", "message_id",
    "text", "attachment_name", "reply_to", "idempotency_key", "created_at", "started_at",
    "finished_at", "attempts", "reply_patch", "crashes",
)


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8")


def _seconds(raw: bytes | None) -> float | None:
    return None if raw is None or raw == b"" else float(raw)


def _job_from(job_id: int, fields: Mapping[str, bytes | None], *, with_attachment: bool) -> Job:
    attachment = None
    name = fields.get("attachment_name")
    if with_attachment and name is not None:
        attachment = Attachment(_text(name), bytes(fields.get("attachment") or b""))
    return Job(
        id=job_id,
        kind=JobKind(_text(fields.get("kind"))),
        status=JobStatus(_text(fields.get("status"))),
        platform=_text(fields.get("platform")),
        collection=_text(fields.get("collection")),
        channel=_text(fields.get("channel")),
        thread=_text(fields.get("thread")),
        user=_text(fields.get("user")),
        message_id=_text(fields.get("message_id")),
        text=_text(fields.get("text")),
        attachment=attachment,
        reply_to={
            **json.loads(_text(fields.get("reply_to")) or "{}"),
            **json.loads(_text(fields.get("reply_patch")) or "{}"),
        },
        idempotency_key=_text(fields.get("idempotency_key")),
        created_at=_seconds(fields.get("created_at")) or 0.0,
        started_at=_seconds(fields.get("started_at")),
        finished_at=_seconds(fields.get("finished_at")),
        attempts=int(fields.get("attempts") or 0),
        crashes=int(fields.get("crashes") or 0),
    )


def _job_fields(job: Job) -> list[str | bytes]:
    """The job as the flat field/value list `HSET` takes (status and times are the script's)."""
    pairs: list[tuple[str, str | bytes]] = [
        ("kind", job.kind.value),
        ("platform", job.platform),
        ("collection", job.collection),
        ("channel", job.channel),
        ("thread", job.thread),
        ("user", job.user),
        ("message_id", job.message_id),
        ("text", job.text),
        ("reply_to", json.dumps(dict(job.reply_to), ensure_ascii=False)),
        ("idempotency_key", job.idempotency_key),
    ]
    if job.attachment is not None:
        pairs += [("attachment_name", job.attachment.filename), ("attachment", job.attachment.data)]
    return [item for pair in pairs for item in pair]


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
            name: client.register_script(_COMMON + body)
            for name, body in (
                ("put", _PUT), ("claim", _CLAIM), ("complete", _COMPLETE),
                ("cancel_pending", _CANCEL_PENDING), ("requeue", _REQUEUE),
                ("heartbeat", _HEARTBEAT), ("recover", _RECOVER), ("has_work", _HAS_WORK),
                ("undelivered", _UNDELIVERED), ("mark_delivered", _MARK_DELIVERED),
                ("raise_seq", _RAISE_SEQ), ("remember_reply", _REMEMBER_REPLY),
            )
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

    async def put(self, job: Job) -> Placement:
        try:
            reply = await self._run(
                "put", job.platform, job.idempotency_key, job.user, job.message_id,
                self._max_pending, self._max_per_user, *_job_fields(job),
            )
        except FolioError:
            raise
        except Exception as exc:  # the user gets a line; nothing was stored
            logger.warning("redis queue: could not store a job: %s", self._config.scrub(str(exc)))
            raise QueueUnavailableError(
                "The queue is unavailable right now; please try again in a minute."
            ) from None
        verdict = _text(reply[0])
        if verdict == "duplicate":
            raise DuplicateJobError(f"Already received that message (job {_text(reply[1])}).")
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
        fields = {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        self._held[job_id] = _text(fields["token"])
        return _job_from(job_id, fields, with_attachment=True)

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
        values = await self._redis.hmget(self._job_key(job_id), _LIGHT_FIELDS)
        if values[0] is None:
            return None
        return _job_from(job_id, dict(zip(_LIGHT_FIELDS, values, strict=True)),
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
            values = await self._redis.hmget(self._job_key(job_id), (*_LIGHT_FIELDS, "result"))
            if values[0] is None or values[-1] is None:
                continue
            job = _job_from(job_id, dict(zip(_LIGHT_FIELDS, values[:-1], strict=True)),
                            with_attachment=False)
            found.append((job, outcome_from_json(_text(values[-1]))))
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
            _text(who): int(seq)
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
        """This node's history row, with the stub `jobs` row its foreign key needs.

        The stub has no attachment and no result (delivery is tracked in Redis, and a later
        switch back to the SQLite queue must not redeliver it); its key names the Redis job.
        """
        if record is None:
            return
        try:
            async with self._db.transaction() as db:
                await db.execute(
                    "INSERT INTO jobs (id, kind, status, platform, collection, channel, thread,"
                    " user_id, message_id, text, reply_to, idempotency_key, created_at,"
                    " finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job_id, record.kind, record.status, record.platform, record.collection,
                        record.channel, record.thread, record.user_id, record.message_id,
                        record.question, record.reply_to,
                        f"redis:{self._config.prefix}:{job_id}", record.asked_at,
                        record.answered_at, record.error,
                    ),
                )
                await insert_record(db, record)
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

