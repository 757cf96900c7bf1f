"""Work done ahead of its consumer, in order, with a bound on what waits.

Ingest parses the next files (two at a time, each in a child process) while the current one is
embedded: parsing then never waits for embedding, and a large file's parse is not left for the
end. The results come back in the files' order, however the parses finish. Each
parsed file waiting holds its PDF (kept as the original), so what waits is bounded both by
count and by weight (bytes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Prefetcher(Generic[T, R]):
    """Iterates over `work(item)` for each item, in the items' order, running the work on
    `pool` ahead of the consumer: up to `max_items` items, adding one while those waiting
    weigh less than `max_weight` in total (so one always runs ahead, however heavy)."""

    def __init__(
        self,
        pool: Executor,
        work: Callable[[T], R],
        items: Iterable[T],
        *,
        weight: Callable[[T], int],
        max_items: int,
        max_weight: int,
    ) -> None:
        self._pool = pool
        self._work = work
        self._items = iter(items)
        self._weight = weight
        self._max_items = max(1, max_items)
        self._max_weight = max_weight
        self._ahead: deque[tuple[Future[R], int]] = deque()

    def __iter__(self) -> Iterator[R]:
        self._top_up()
        while self._ahead:
            future, _ = self._ahead.popleft()
            result = future.result()
            self._top_up()  # before the consumer starts on `result`
            yield result

    def busy(self) -> bool:
        """Whether work submitted ahead is still running (or waiting for the pool)."""
        return any(not future.done() for future, _ in self._ahead)

    def waiting(self) -> int:
        """Items submitted and not yet handed to the consumer."""
        return len(self._ahead)

    def close(self) -> None:
        """Cancel the work not yet started (the consumer stopped early)."""
        while self._ahead:
            self._ahead.popleft()[0].cancel()

    def _top_up(self) -> None:
        while len(self._ahead) < self._max_items:
            held = sum(weight for _, weight in self._ahead)
            if self._ahead and held >= self._max_weight:
                return
            try:
                item = next(self._items)
            except StopIteration:
                return
            self._ahead.append((self._pool.submit(self._work, item), self._weight(item)))
