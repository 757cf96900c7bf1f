"""Prefetcher: work runs ahead of its consumer in order, bounded by count and by weight, and
what was not started when the consumer stops is cancelled."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from rag.prefetch import Prefetcher


def test_results_come_in_order_with_at_most_max_items_waiting() -> None:
    submitted: list[int] = []
    with ThreadPoolExecutor(max_workers=2) as pool:

        def work(item: int) -> int:
            return item * 10

        def weight(item: int) -> int:
            submitted.append(item)
            return 1

        ahead = Prefetcher(pool, work, range(10), weight=weight, max_items=3, max_weight=100)
        seen = []
        for result in ahead:
            consumed = len(seen) + 1
            assert len(submitted) - consumed <= 3  # never more than three waiting
            assert ahead.waiting() == min(3, 10 - consumed)  # topped up before the consumer
            seen.append(result)
    assert seen == [item * 10 for item in range(10)]


def test_two_lanes_finishing_out_of_order_still_give_results_in_order() -> None:
    later_done = threading.Event()
    finished: list[int] = []
    with ThreadPoolExecutor(max_workers=2) as pool:

        def work(item: int) -> int:
            if item == 0:
                assert later_done.wait(10)  # the first file is the slow one
            finished.append(item)
            if item == 1:
                later_done.set()
            return item

        ahead = Prefetcher(pool, work, range(4), weight=lambda _: 1, max_items=4, max_weight=10)
        seen = list(ahead)
    assert finished.index(1) < finished.index(0)  # both ran at once; the second finished first
    assert seen == [0, 1, 2, 3]


def test_weight_bounds_what_waits_but_one_heavy_item_still_runs_ahead() -> None:
    sizes = [5, 60, 30, 30, 30, 200, 1]
    waiting_weights: list[int] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = Prefetcher(
            pool,
            lambda i: i,
            range(len(sizes)),
            weight=sizes.__getitem__,
            max_items=4,
            max_weight=64,
        )
        for index in ahead:
            waiting = list(range(index + 1, index + 1 + ahead.waiting()))
            weights = [sizes[i] for i in waiting]
            waiting_weights.append(sum(weights))
            # Items are added while what waits weighs under 64, so only the last may cross it.
            assert sum(weights[:-1]) < 64
            if index + 1 < len(sizes):
                assert ahead.waiting() >= 1  # even the 200 goes ahead alone
    assert max(waiting_weights) >= 200  # the heavy item did wait, alone


def test_busy_says_whether_work_ahead_is_still_running() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:

        def work(item: int) -> int:
            if item == 1:
                release.wait(10)
            return item

        ahead = Prefetcher(pool, work, [0, 1], weight=lambda _: 1, max_items=2, max_weight=10)
        results = iter(ahead)
        assert next(results) == 0
        assert ahead.busy()  # item 1 is blocked in work()
        release.set()
        assert next(results) == 1
        assert not ahead.busy()


def test_closing_early_cancels_the_work_not_started() -> None:
    started: list[int] = []
    running, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:

        def work(item: int) -> int:
            started.append(item)
            if item == 1:
                running.set()
                release.wait(10)
            return item

        ahead = Prefetcher(pool, work, range(6), weight=lambda _: 1, max_items=4, max_weight=10)
        for result in ahead:
            assert result == 0
            break  # items 1..4 are queued
        assert running.wait(10)  # 1 runs (blocked); 2, 3 and 4 wait for the pool
        ahead.close()
        release.set()
    assert started == [0, 1]  # 2, 3 and 4 never ran
    assert ahead.waiting() == 0
