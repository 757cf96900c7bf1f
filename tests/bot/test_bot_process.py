"""The core as a real process: SIGKILL mid-generation loses nothing and answers nothing twice;
SIGTERM exits 0 promptly with the job finished or back in the queue."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUNNER = Path(__file__).with_name("core_runner.py")
Event = dict[str, Any]


class Runner:
    """One run of core_runner.py, whose stdout events the test reads as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []

    @classmethod
    async def start(cls, db: Path, out: Path, *args: str) -> Runner:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(RUNNER), str(db), str(out), *args,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def read_until(self, done: Callable[[list[Event]], bool], within: float = 20) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while not done(self.events):
                line = await self.proc.stdout.readline()
                assert line, f"the runner exited early (code {await self.proc.wait()})"
                self.events.append(json.loads(line))

    async def finish(self, within: float) -> int:
        """Read the rest of the output and wait for the exit code."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            rest = await self.proc.stdout.read()
            self.events.extend(json.loads(line) for line in rest.decode().splitlines())
            return await self.proc.wait()


def finals(events: list[Event]) -> list[str]:
    return [e["key"] for e in events if e["event"] == "final"]


def statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT idempotency_key, status FROM jobs").fetchall())


def recorded(out: Path) -> list[Event]:
    return [json.loads(line) for line in out.read_text().splitlines()]


async def test_sigkill_mid_generation_then_restart_answers_every_job_once(tmp_path: Path) -> None:
    db, out = tmp_path / "bot.sqlite", tmp_path / "out.jsonl"
    args = ("--jobs", "6", "--words", "25", "--delay", "0.02")
    first = await Runner.start(db, out, *args)

    def mid_generation(events: list[Event]) -> bool:
        done = set(finals(events))
        return len(done) >= 2 and any(
            e["event"] == "partial" and e["key"] not in done for e in events[-1:]
        )

    await first.read_until(mid_generation)
    first.proc.kill()
    assert await first.proc.wait() == -signal.SIGKILL
    assert "running" in statuses(db).values()  # it really died in the middle of a job

    second = await Runner.start(db, out, *args)
    answered_before = set(finals(recorded(out)))  # the file: complete, unlike what we read
    everything = {f"q{i}" for i in range(6)}
    await second.read_until(lambda ev: answered_before | set(finals(ev)) == everything)
    second.proc.send_signal(signal.SIGTERM)
    assert await second.finish(within=10) == 0

    counts = Counter(finals(recorded(out)))
    assert counts == Counter({f"q{i}": 1 for i in range(6)})  # none lost, none twice
    duplicates = [e["key"] for e in second.events if e["event"] == "duplicate"]
    assert sorted(duplicates) == [f"q{i}" for i in range(6)]  # redelivered events were refused
    assert set(statuses(db).values()) == {"done"}


async def test_sigterm_during_a_long_generation_requeues_it_and_exits_0(tmp_path: Path) -> None:
    db, out = tmp_path / "bot.sqlite", tmp_path / "out.jsonl"
    runner = await Runner.start(
        db, out, "--jobs", "1", "--words", "500", "--delay", "0.02", "--grace", "0.3"
    )
    await runner.read_until(lambda ev: any(e["event"] == "partial" for e in ev))
    signalled = time.monotonic()
    runner.proc.send_signal(signal.SIGTERM)
    assert await runner.finish(within=10) == 0
    assert time.monotonic() - signalled < 5
    assert finals(runner.events) == [] and runner.events[-1]["event"] == "stopped"
    assert statuses(db) == {"q0": "pending"}

    again = await Runner.start(db, out, "--jobs", "1", "--words", "5")
    await again.read_until(lambda ev: finals(ev) == ["q0"])
    again.proc.send_signal(signal.SIGTERM)
    assert await again.finish(within=10) == 0
    assert finals(recorded(out)) == ["q0"] and statuses(db) == {"q0": "done"}


async def test_sigterm_during_a_short_generation_lets_it_finish(tmp_path: Path) -> None:
    db, out = tmp_path / "bot.sqlite", tmp_path / "out.jsonl"
    runner = await Runner.start(db, out, "--jobs", "1", "--words", "40", "--delay", "0.02")
    await runner.read_until(lambda ev: any(e["event"] == "partial" for e in ev))
    runner.proc.send_signal(signal.SIGTERM)
    assert await runner.finish(within=10) == 0
    assert finals(runner.events) == ["q0"] and runner.events[-1]["event"] == "stopped"
    assert statuses(db) == {"q0": "done"}
