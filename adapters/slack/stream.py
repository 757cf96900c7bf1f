"""One answer message that grows by edits: posted once, edited as the core's throttle asks (it
keeps to chat.update's rate limit per channel), then replaced by the final text, whose overflow
goes into the thread as further messages."""

from __future__ import annotations

import asyncio

from adapters.slack.mrkdwn import split_message
from adapters.slack.outbox import Posted, SlackOutbox


class StreamingMessage:
    def __init__(
        self,
        outbox: SlackOutbox,
        channel: str,
        *,
        thread_ts: str | None,
        existing_ts: str | None = None,
        existing_channel: str | None = None,
    ) -> None:
        self._outbox = outbox
        self.channel = channel
        self.thread_ts = thread_ts
        self.posted = Posted(existing_channel or channel, existing_ts) if existing_ts else None
        self.stored_ts = existing_ts  # the message the job's stored `reply_to` names
        self._last_text = ""
        self._overflow_sent = 0  # pieces after the first already posted by `finish`
        self._lock = asyncio.Lock()  # the worker's edits and the listener's first post can race

    @property
    def ts(self) -> str | None:
        return self.posted.ts if self.posted else None

    async def show(self, text: str) -> bool:
        """Post or edit to `text` (cut to one message); False if it is what is shown already."""
        async with self._lock:
            return await self._show(self._fit(text))

    async def _show(self, text: str) -> bool:
        if self.posted is None:
            self.posted = await self._outbox.post(self.channel, text, thread_ts=self.thread_ts)
            self._last_text = text
            return True
        if text == self._last_text:
            return False
        if not await self._try_update(self.posted, text):
            # deleted (by someone, or before a restart): carry on in a new message
            self.posted = await self._outbox.post(self.channel, text, thread_ts=self.thread_ts)
        self._last_text = text
        return True

    async def finish(self, text: str) -> None:
        """The final text: the first piece replaces the message, the rest go to its thread."""
        async with self._lock:
            await self._finish(text)

    async def _finish(self, text: str) -> None:
        pieces = split_message(text, self._outbox.message_limit)
        if (
            self.posted is not None
            and pieces[0] != self._last_text
            and not await self._try_update(self.posted, pieces[0])
        ):
            self.posted = None  # someone deleted the message: post the answer anew
        if self.posted is None:
            self.posted = await self._outbox.post(self.channel, pieces[0], thread_ts=self.thread_ts)
        self._last_text = pieces[0]
        thread = self.thread_ts or self.posted.ts
        # Safe to call again after a failure: what was already posted is not posted twice.
        for piece in pieces[1 + self._overflow_sent :]:
            await self._outbox.post(self.channel, piece, thread_ts=thread)
            self._overflow_sent += 1

    async def _try_update(self, posted: Posted, text: str) -> bool:
        from slack_sdk.errors import SlackApiError

        try:
            await self._outbox.update(posted, text)
        except SlackApiError as exc:
            if exc.response.get("error") in ("message_not_found", "cant_update_message"):
                return False
            raise
        return True

    def _fit(self, text: str) -> str:
        limit = self._outbox.message_limit
        if len(text) <= limit:
            return text
        return split_message(text, limit - 2)[0] + " …"
