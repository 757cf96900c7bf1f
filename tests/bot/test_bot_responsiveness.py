"""The event loop stays responsive while the engine works on its own thread."""

from __future__ import annotations

import asyncio
import time

from fakes import FakeEngine, RecordingAdapter, StartCore, make_job


async def test_a_50ms_ticker_is_never_late_by_more_than_100ms(start_core: StartCore) -> None:
    engine = FakeEngine(token_delay_s=0.01, busy=True)  # CPU-bound Python in the engine thread
    engine.enqueue(" ".join(["busy"] * 150), " ".join(["busy"] * 150))
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, edit_interval_s=0)  # an edit for every word
    lateness: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        expected = time.monotonic()
        while not done.is_set():
            expected += 0.05
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            lateness.append(time.monotonic() - expected)

    ticking = asyncio.create_task(ticker())
    first = await core.submit(make_job("alpha", "ann"))
    second = await core.submit(make_job("alpha", "bob"))
    await adapter.wait_final(first.job_id)
    await adapter.wait_final(second.job_id)
    done.set()
    await ticking
    partials = [e for e in adapter.events if e.kind == "stream_partial"]
    assert len(lateness) >= 20 and len(partials) >= 50  # the engine really was busy meanwhile
    assert max(lateness) < 0.1, f"the loop was blocked for {max(lateness):.3f}s"
