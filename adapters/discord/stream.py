"""One answer that grows by edits: posted once, edited at most every `interval_s` seconds while the
answer is written (Discord rate-limits edits per channel), then replaced by the final text, whose
overflow goes out as further messages."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import discord

from adapters.discord.outlets import Outlet, Sent

MESSAGE_LIMIT = 2000
_ELLIPSIS = " …"


class StreamingReply:
    def __init__(
        self,
        outlet: Outlet,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        limit: int = MESSAGE_LIMIT,
        existing: discord.PartialMessage | None = None,
    ) -> None:
        self.outlet = outlet
        self._interval = interval_s
        self._clock = clock
        self._limit = limit
        # `existing`: the job's message posted by an earlier process, known only by its ids
        self.message: Sent | discord.PartialMessage | None = existing
        self._last_edit = float("-inf")
        self._last_text = ""
        self._overflow_sent = 0  # pieces after the first already sent by `finish`

    async def show(self, text: str, *, force: bool = False) -> bool:
        """Post or edit to `text` (cut to one message); False if skipped by the throttle."""
        text = self._fit(text)
        if self.message is None:
            self.message = await self.outlet.send(text)
        elif text == self._last_text or (
            not force and self._clock() - self._last_edit < self._interval
        ):
            return False
        else:
            self.message = await self.outlet.edit(self.message, text)
        self._last_edit = self._clock()
        self._last_text = text
        return True

    async def finish(self, pieces: Sequence[str]) -> None:
        """The final text, already split to fit: the first piece replaces the streamed message.

        Safe to call again after a failure: what was already sent is not sent twice."""
        first, *rest = [p for p in pieces if p.strip()] or ["…"]
        await self.show(first, force=True)
        for piece in rest[self._overflow_sent :]:
            await self.outlet.send(piece)
            self._overflow_sent += 1

    def _fit(self, text: str) -> str:
        text = text.strip() or "…"
        if len(text) <= self._limit:
            return text
        return text[: self._limit - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
