"""A bot process on the shared Redis queue, for the two-process crash test: `BotCore` with the
redis back end + a slow `FakeEngine` + an adapter that appends every call to this process's own
file (and echoes it to stdout, which the test reads to know when to strike). It submits the
questions q0..q(N-1) like a platform delivering the same events to every process; each is
accepted by exactly one of them. SIGTERM/SIGINT stop the core gracefully.

    python redis_runner.py DB OUT REDIS_URL PREFIX --jobs N --words W --delay S --claim-timeout T
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE.parents[1]), str(_HERE.parent / "bot")]

from core_runner import FileAdapter  # noqa: E402
from fakes import FakeEngine, make_job  # noqa: E402

from bot.core import BotCore, CoreOptions  # noqa: E402
from bot.errors import DuplicateJobError  # noqa: E402
from bot.redis_queue import RedisQueueConfig  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    engine = FakeEngine(token_delay_s=args.delay)
    engine.enqueue(*[" ".join(["word"] * args.words)] * (args.jobs * 2))
    adapter = FileAdapter(args.out)
    options = CoreOptions(
        edit_interval_s=0.05, stop_grace_s=args.grace, cancel_wait_s=2.0,
        max_pending_per_user=args.jobs,
    )
    redis = RedisQueueConfig(
        url=args.redis_url, prefix=args.prefix, claim_timeout_s=args.claim_timeout,
        delivery_lease_s=args.claim_timeout,
    )
    core = BotCore(engine, args.db, options, redis=redis)
    core.register(adapter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await core.start()
    adapter.emit("started")
    for i in range(args.jobs):
        job = make_job("file", f"user{i % 3}", f"question {i}", key=f"q{i}")
        try:
            accepted = await core.submit(job)
        except DuplicateJobError:  # the other process took this event
            adapter.emit("duplicate", key=job.idempotency_key)
        else:
            adapter.emit("accepted", accepted.job)
    adapter.emit("submitted")
    await stop.wait()
    await core.stop()
    adapter.emit("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("redis_url")
    parser.add_argument("prefix")
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--claim-timeout", type=float, default=1.5)
    asyncio.run(main(parser.parse_args()))
