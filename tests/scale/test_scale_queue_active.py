"""`JobQueue.active()` (the web page's queue view): running jobs first, then every waiting job
at the position the claims will actually take it, on the SQLite queue and on the Redis queue."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakes import make_job

from bot.migrations import BotDatabase
from bot.queue import SqliteJobQueue

if TYPE_CHECKING:
    from scale_redis import MakeQueue

pytest_plugins = ["scale_redis"]
USERS = [("p", "ann"), ("p", "bob"), ("q", "cy")]


async def _check_positions_are_the_claim_order(queue: Any) -> None:
    rng = random.Random(4)
    for _ in range(9):
        await queue.put(make_job(*rng.choice(USERS)))
    running = await queue.claim(["p", "q"])
    for _ in range(4):
        await queue.put(make_job(*rng.choice(USERS)))
    active = await queue.active()
    assert running is not None
    assert (active[0][0].id, active[0][1]) == (running.id, 0)
    waiting = active[1:]
    assert [position for _, position in waiting] == list(range(1, len(waiting) + 1))
    claimed = []
    while (job := await queue.claim(["p", "q"])) is not None:
        claimed.append(job.id)
    assert [job.id for job, _ in waiting] == claimed


async def test_sqlite_positions_are_the_claim_order(tmp_path: Path) -> None:
    db = await BotDatabase.open(tmp_path / "bot.sqlite")
    try:
        await _check_positions_are_the_claim_order(
            SqliteJobQueue(db, max_pending=100, max_pending_per_user=100)
        )
    finally:
        await db.close()


async def test_redis_positions_are_the_claim_order(make_queue: MakeQueue) -> None:
    await _check_positions_are_the_claim_order(await make_queue("a"))
