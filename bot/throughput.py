"""How long jobs take, for the ETA a user is told when a question is queued."""

from __future__ import annotations

from collections import deque


class Throughput:
    """Moving average of recent job run times, for "answered in ~40s" at acceptance."""

    def __init__(self, *, default_s: float = 20.0, window: int = 20, parallel: int = 1) -> None:
        self._default = default_s
        self._recent: deque[float] = deque(maxlen=window)
        self._parallel = max(1, parallel)

    def add(self, seconds: float) -> None:
        if seconds >= 0:
            self._recent.append(seconds)

    @property
    def average_s(self) -> float:
        """The mean of the recent run times; the default before anything was measured."""
        return sum(self._recent) / len(self._recent) if self._recent else self._default

    def eta(self, jobs_until_done: int) -> float:
        """Seconds until `jobs_until_done` more jobs (this one included) have run, `parallel`
        at a time."""
        return self.average_s * max(1, -(-jobs_until_done // self._parallel))
