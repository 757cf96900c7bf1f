"""One answer that grows by edits: posted once, edited as the core's throttle asks (it keeps to
Discord's rate of edits per channel), then replaced by the final text, whose overflow goes out as
further messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import discord

    from adapters.discord.outlets import Outlet, Sent

MESSAGE_LIMIT = 2000
_ELLIPSIS = " …"


class StreamingReply:
    def __init__(
        self,
        outlet: Outlet,
        *,
        limit: int = MESSAGE_LIMIT,
        existing: discord.PartialMessage | None = None,
    ) -> None:
        self.outlet = outlet
        self._limit = limit
        # `existing`: the job's message posted by an earlier process, known only by its ids
        self.message: Sent | discord.PartialMessage | None = existing
        self._last_text = ""
        self._overflow_sent = 0  # pieces after the first already sent by `finish`

    async def show(self, text: str) -> bool:
        """Post or edit to `text` (cut to one message); False if it is what is shown already."""
        text = self._fit(text)
        if self.message is None:
            self.message = await self.outlet.send(text)
        elif text == self._last_text:
            return False
        else:
            self.message = await self.outlet.edit(self.message, text)
        self._last_text = text
        return True

    async def finish(self, pieces: Sequence[str]) -> None:
        """The final text, already split to fit: the first piece replaces the streamed message.

        Safe to call again after a failure: what was already sent is not sent twice."""
        first, *rest = [p for p in pieces if p.strip()] or ["…"]
        await self.show(first)
        for piece in rest[self._overflow_sent :]:
            await self.outlet.send(piece)
            self._overflow_sent += 1

    def _fit(self, text: str) -> str:
        text = text.strip() or "…"
        if len(text) <= self._limit:
            return text
        return text[: self._limit - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
