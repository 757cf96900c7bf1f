"""Retrying a job's final reply through a platform outage.

The chat libraries retry a 429 or a 5xx only a few times (slack_sdk never retries a 502; discord.py
never retries a 503), and the core logs a failed final reply and moves on: during a storm of 429s
and 5xx the answer would be lost. The adapters therefore send the final reply through
`retry_transient`, which keeps trying with backoff for a bounded time. The worker waits meanwhile,
so answers are delayed, not lost; and the job stays undelivered in the queue until the reply is
out, so a restart mid-outage still delivers it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

FINAL_REPLY_BUDGET_S = 180.0  # how long one final reply keeps being retried
_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 10.0


async def retry_transient(
    send: Callable[[], Awaitable[T]],
    *,
    transient: Callable[[BaseException], bool],
    what: str,
    budget_s: float = FINAL_REPLY_BUDGET_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`await send()`, again after each transient failure (doubling waits up to 10 s) until it
    succeeds or `budget_s` has passed; any other error, or the last one, is raised."""
    deadline = clock() + budget_s
    delay = _FIRST_DELAY_S
    attempt = 1
    while True:
        try:
            return await send()
        except Exception as exc:
            if not transient(exc) or clock() + delay > deadline:
                raise
            log.warning("%s failed (attempt %d: %s); retrying in %.1fs", what, attempt, exc, delay)
        await sleep(delay)
        delay = min(delay * 2, _MAX_DELAY_S)
        attempt += 1
