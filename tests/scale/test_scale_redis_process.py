"""Two real bot processes sharing one Redis queue (issue 9): one SIGKILLed mid-answer, every
question still answered exactly once by one of them; a SIGTERMed one hands its job over at once."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from scale_redis import RedisServer

pytest_plugins = ["scale_redis"]  # its fixture: redis_server

RUNNER = Path(__file__).with_name("redis_runner.py")
Event = dict[str, Any]


class Runner:
    """One run of redis_runner.py; its stdout events are read as they come, in the background
    (so a chatty process never blocks on a full pipe)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, name: str, tmp: Path, server: RedisServer, prefix: str,
                    *args: str) -> Runner:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(RUNNER), str(tmp / f"{name}.sqlite"), str(tmp / f"{name}.jsonl"),
            server.url, prefix, *args,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(json.loads(line))
            self._changed.set()
        self._changed.set()

    async def wait_for(self, done: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within):
            while not done():
                assert not self._reader.done(), f"exited early (code {self.proc.returncode})"
                self._changed.clear()
                await self._changed.wait()

    async def finish(self, within: float) -> int:
        async with asyncio.timeout(within):
            code = await self.proc.wait()
            await self._reader
        return code


def finals(events: list[Event]) -> list[str]:
    return [e["key"] for e in events if e["event"] == "final"]


def keys_of(events: list[Event], kind: str) -> set[str]:
    return {e["key"] for e in events if e["event"] == kind}


def recorded(out: Path) -> list[Event]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def history_job_ids(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT job_id FROM history")]


def redis_jobs(url: str, prefix: str) -> dict[str, dict[str, str]]:
    """Every job hash under the prefix, by idempotency key."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        jobs = {}
        for key in client.scan_iter(f"{prefix}:job:*"):
            fields = client.hgetall(key)
            jobs[fields["idempotency_key"]] = {**fields, "id": key.rsplit(":", 1)[1]}
        return jobs
    finally:
        client.close()


async def test_two_processes_one_sigkilled_mid_answer_answer_every_question_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    jobs = 12
    everything = {f"q{i}" for i in range(jobs)}
    prefix = f"p{uuid.uuid4().hex[:8]}"
    # ~1.2 s per answer; a process that stops heartbeating loses its job after 1.5 s.
    args = ("--jobs", str(jobs), "--words", "60", "--delay", "0.02", "--claim-timeout", "1.5")
    a = await Runner.start("a", tmp_path, redis_server, prefix, *args)
    b = await Runner.start("b", tmp_path, redis_server, prefix, *args)
    try:

        def a_early_in_an_answer() -> bool:
            """A has answered something and has just begun the next answer (not near its end,
            so the kill cannot land between finishing a job and delivering it)."""
            done = set(finals(a.events))
            last = a.events[-1] if a.events else {}
            return bool(done) and last.get("event") == "partial" and (
                last["key"] not in done and last["chars"] < 100
            )

        await a.wait_for(a_early_in_an_answer, within=30)
        victim = a.events[-1]["key"]
        a.proc.kill()
        assert await a.finish(within=10) == -signal.SIGKILL
        assert redis_jobs(redis_server.url, prefix)[victim]["status"] == "running"

        def all_answered() -> bool:
            return set(finals(recorded(tmp_path / "a.jsonl"))) | set(finals(b.events)) == everything

        await b.wait_for(all_answered, within=45)
        b.proc.send_signal(signal.SIGTERM)
        assert await b.finish(within=15) == 0
    finally:
        for runner in (a, b):
            if runner.proc.returncode is None:
                runner.proc.kill()
                await runner.proc.wait()

    out_a, out_b = recorded(tmp_path / "a.jsonl"), recorded(tmp_path / "b.jsonl")
    # Every question answered exactly once, by one process or the other; none lost.
    assert Counter(finals(out_a) + finals(out_b)) == Counter({key: 1 for key in everything})
    # The answer A died in was taken over by B (a second attempt), after the claim timeout.
    assert victim in finals(out_b)
    assert victim not in finals(out_a)
    taken_over = next(e for e in out_b if e["event"] == "final" and e["key"] == victim)
    assert taken_over["pid"] == b.proc.pid
    jobs_in_redis = redis_jobs(redis_server.url, prefix)
    assert jobs_in_redis[victim]["attempts"] == "2"
    assert {j["status"] for j in jobs_in_redis.values()} == {"done"}
    assert set(jobs_in_redis) == everything
    # Each delivered event was accepted by exactly one process; the other was told "duplicate".
    accepted_a, accepted_b = keys_of(out_a, "accepted"), keys_of(out_b, "accepted")
    assert accepted_a | accepted_b == everything and not accepted_a & accepted_b
    assert keys_of(out_a, "duplicate") == everything - accepted_a
    assert keys_of(out_b, "duplicate") == everything - accepted_b
    # Both processes did real work, and each logged what it answered in its own history.
    answered_a, answered_b = set(finals(out_a)), set(finals(out_b))
    assert answered_a and answered_b
    ids_a, ids_b = history_job_ids(tmp_path / "a.sqlite"), history_job_ids(tmp_path / "b.sqlite")
    assert len(ids_a) == len(answered_a) and len(ids_b) == len(answered_b)
    assert sorted(ids_a + ids_b) == sorted(int(j["id"]) for j in jobs_in_redis.values())


async def test_a_sigtermed_process_hands_its_long_answer_to_the_other_at_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}"
    # A long claim timeout: a handover faster than it can only be the graceful requeue.
    a = await Runner.start("a", tmp_path, redis_server, prefix, "--jobs", "1", "--words", "400",
                           "--grace", "0.3", "--claim-timeout", "30")
    b = None
    try:
        await a.wait_for(lambda: any(e["event"] == "partial" for e in a.events), within=20)
        b = await Runner.start("b", tmp_path, redis_server, prefix, "--jobs", "0",
                               "--words", "5", "--claim-timeout", "30")
        await b.wait_for(lambda: any(e["event"] == "started" for e in b.events), within=20)
        a.proc.send_signal(signal.SIGTERM)
        assert await a.finish(within=10) == 0
        handed_over = time.monotonic()
        await b.wait_for(lambda: finals(b.events) == ["q0"], within=10)
        assert time.monotonic() - handed_over < 5
        b.proc.send_signal(signal.SIGTERM)
        assert await b.finish(within=10) == 0
    finally:
        for runner in (a, b):
            if runner is not None and runner.proc.returncode is None:
                runner.proc.kill()
                await runner.proc.wait()
    assert finals(a.events) == [] and a.events[-1]["event"] == "stopped"
    job = redis_jobs(redis_server.url, prefix)["q0"]
    assert job["status"] == "done" and job["attempts"] == "2"
