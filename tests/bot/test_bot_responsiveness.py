"""The event loop stays responsive while the engine works on its own thread.

Wall-clock lateness alone cannot tell the engine blocking the loop from a loaded machine
descheduling the whole process (on shared cores a 50 ms ticker is sometimes 0.6 s late with
nothing wrong), so the test asserts what only a blocked loop would show, whatever the load: the
loop thread itself never spends long on CPU between two ticks (it would, doing the engine's
work), and the loop keeps ticking *while* each answer is being written (a loop blocked by the
engine, on its thread or by never getting the GIL back, would tick only after it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fakes import FakeEngine, RecordingAdapter, StartCore, make_job

from rag.types import Answer

TICK_S = 0.05


@dataclass
class TimedEngine(FakeEngine):
    """Remembers when each answer was being computed (on the engine's thread)."""

    spans: list[tuple[float, float]] = field(default_factory=list)

    def answer(self, question: str, **kwargs: Any) -> Answer:
        started = time.monotonic()
        try:
            return super().answer(question, **kwargs)
        finally:
            self.spans.append((started, time.monotonic()))


async def test_the_loop_keeps_ticking_while_the_engine_burns_cpu(start_core: StartCore) -> None:
    engine = TimedEngine(token_delay_s=0.01, busy=True)  # CPU-bound Python in the engine thread
    engine.enqueue(" ".join(["busy"] * 150), " ".join(["busy"] * 150))  # >= 1.5 s each
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, edit_interval_s=0)  # an edit for every word
    ticks: list[float] = []  # when each tick ran
    loop_cpu: list[float] = []  # the loop thread's own CPU time between two ticks
    done = asyncio.Event()

    async def ticker() -> None:
        expected = time.monotonic()
        cpu = time.thread_time()
        while not done.is_set():
            expected += TICK_S
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            ticks.append(time.monotonic())
            now_cpu = time.thread_time()
            loop_cpu.append(now_cpu - cpu)
            cpu = now_cpu

    ticking = asyncio.create_task(ticker())
    first = await core.submit(make_job("alpha", "ann"))
    second = await core.submit(make_job("alpha", "bob"))
    await adapter.wait_final(first.job_id, within=60)
    await adapter.wait_final(second.job_id, within=60)
    done.set()
    await ticking

    assert len(engine.spans) == 2
    for started, ended in engine.spans:
        during = [t for t in ticks if started < t < ended]
        assert len(during) >= 5, (
            f"the loop ticked {len(during)} time(s) while the engine computed an answer for "
            f"{ended - started:.2f}s: it was blocked"
        )
    assert max(loop_cpu) < 0.1, f"the loop thread itself computed for {max(loop_cpu):.3f}s"
    assert threading.get_ident() not in engine.thread_ids  # the engine ran on its own thread
    partials = [e for e in adapter.events if e.kind == "stream_partial"]
    assert len(partials) >= 50  # control: the engine really was busy, word by word
