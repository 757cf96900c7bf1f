"""Everything the adapter sends to Slack goes through here: posts never unfurl, long texts are
split, and a command's `response_url` is used only while Slack still accepts it.

Callers pass text that is already safe mrkdwn (see `mrkdwn.escape`); nothing here adds markup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.slack.mrkdwn import split_message

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient
    from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger(__name__)

RESPONSE_URL_TTL_S = 30 * 60
RESPONSE_URL_MAX_USES = 5


@dataclass(slots=True)
class ResponseUrl:
    """A slash command's response_url: Slack honours it 5 times within 30 minutes.

    `issued_at` is wall-clock (epoch seconds) so it survives in a job's `reply_to` across restarts.
    """

    url: str
    issued_at: float = field(default_factory=time.time)
    uses: int = 0

    def usable(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.uses < RESPONSE_URL_MAX_USES and now - self.issued_at < RESPONSE_URL_TTL_S


@dataclass(frozen=True, slots=True)
class Posted:
    channel: str
    ts: str


class SlackOutbox:
    def __init__(
        self,
        client: AsyncWebClient,
        webhook_factory: Callable[[str], AsyncWebhookClient],
        *,
        message_limit: int,
    ) -> None:
        self.client = client
        self._webhook_factory = webhook_factory
        self.message_limit = message_limit

    async def post(self, channel: str, text: str, *, thread_ts: str | None = None) -> Posted:
        """Post text (split if long: the rest go to the thread) and return the first message."""
        pieces = split_message(text, self.message_limit)
        first = await self._post_one(channel, pieces[0], thread_ts)
        for piece in pieces[1:]:
            await self._post_one(channel, piece, thread_ts or first.ts)
        return first

    async def _post_one(self, channel: str, text: str, thread_ts: str | None) -> Posted:
        kwargs: dict[str, Any] = {}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        response = await self.client.chat_postMessage(
            channel=channel,
            text=text,
            unfurl_links=False,
            unfurl_media=False,
            **kwargs,
        )
        return Posted(str(response["channel"]), str(response["ts"]))

    async def update(self, posted: Posted, text: str) -> None:
        """Replace a message's text (at most `message_limit` characters: callers split first)."""
        await self.client.chat_update(channel=posted.channel, ts=posted.ts, text=text)

    async def delete(self, posted: Posted) -> None:
        from slack_sdk.errors import SlackApiError

        try:
            await self.client.chat_delete(channel=posted.channel, ts=posted.ts)
        except SlackApiError as exc:
            log.warning("chat.delete failed: %s", exc.response.get("error"))

    async def ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        response_url: ResponseUrl | None = None,
        thread_ts: str | None = None,
    ) -> None:
        """A note only `user` sees: via the response_url while valid, else chat.postEphemeral."""
        text = split_message(text, self.message_limit)[0]
        if response_url is not None and await self.respond(response_url, text):
            return
        kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        await self.client.chat_postEphemeral(channel=channel, user=user, text=text, **kwargs)

    async def respond(
        self, response_url: ResponseUrl, text: str, *, in_channel: bool = False
    ) -> bool:
        """Send through the response_url if it is still valid; False if it was not used."""
        if not response_url.usable():
            return False
        response_url.uses += 1
        webhook = self._webhook_factory(response_url.url)
        try:
            response = await webhook.send(
                text=text,
                response_type="in_channel" if in_channel else "ephemeral",
                unfurl_links=False,
                unfurl_media=False,
            )
        except Exception:  # network trouble: the caller falls back to the Web API
            log.warning("response_url failed", exc_info=True)
            return False
        if response.status_code != 200:
            log.warning("response_url answered %s: %s", response.status_code, response.body)
            return False
        return True
