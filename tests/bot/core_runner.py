"""A bot process for the crash and shutdown tests: `BotCore` + a slow `FakeEngine` + an adapter
that appends every call to a file (and echoes it to stdout, which the test reads to know when to
strike). SIGTERM/SIGINT stop the core gracefully, as the real app does.

    python core_runner.py DB OUT --jobs N --words W --delay S --grace G
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE.parents[1]), str(_HERE)]

from fakes import FakeEngine, make_job  # noqa: E402

from adapters.base import StreamLimits  # noqa: E402
from bot.core import BotCore, CoreOptions  # noqa: E402
from bot.errors import DuplicateJobError  # noqa: E402
from bot.jobs import Job  # noqa: E402
from rag.types import Answer, IngestReport  # noqa: E402


class FileAdapter:
    """Every call becomes one JSON line in the output file (flushed: it must survive SIGKILL)."""

    platform = "file"
    limits = StreamLimits()

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def emit(self, event: str, job: Job | None = None, **data: Any) -> None:
        record = {"event": event, "pid": os.getpid(), **data}
        if job is not None:
            record.update(job=job.id, key=job.idempotency_key)
        line = json.dumps(record)
        self._file.write(line + "\n")
        self._file.flush()
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        self.emit("ack", job, position=position)

    async def post_status(self, job: Job, text: str) -> None:
        self.emit("status", job, text=text)

    async def stream_partial(self, job: Job, text: str) -> None:
        self.emit("partial", job, chars=len(text))

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        self.emit("progress", job)

    async def post_answer(self, job: Job, answer: Answer) -> None:
        self.emit("final", job, text=answer.text)

    async def post_ingest_report(self, job: Job, report: IngestReport) -> None:
        self.emit("final", job, text="ingested")

    async def post_notice(self, job: Job, text: str) -> None:
        self.emit("final", job, text=text)

    async def post_error(self, job: Job, message: str) -> None:
        self.emit("final", job, error=message)


async def main(args: argparse.Namespace) -> None:
    engine = FakeEngine(token_delay_s=args.delay)
    engine.enqueue(*[" ".join(["word"] * args.words)] * (args.jobs * 2))
    adapter = FileAdapter(args.out)
    options = CoreOptions(edit_interval_s=0.05, stop_grace_s=args.grace, cancel_wait_s=2.0)
    core = BotCore(engine, args.db, options)
    core.register(adapter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await core.start()
    for i in range(args.jobs):
        job = make_job("file", f"user{i % 3}", f"question {i}", key=f"q{i}")
        try:
            await core.submit(job)
        except DuplicateJobError:  # a platform redelivering after our restart
            adapter.emit("duplicate", key=job.idempotency_key)
    adapter.emit("submitted")
    await stop.wait()
    await core.stop()
    adapter.emit("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--grace", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
