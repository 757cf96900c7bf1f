"""Who may change a workspace's documents: its admins and owners, plus users named in config.

Asked of Slack (users.info) on every admin action, so that a revoked admin loses the right at once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class AdminCheck:
    def __init__(self, client: AsyncWebClient, allowed_user_ids: Collection[str] = ()) -> None:
        self._client = client
        self._allowed = frozenset(allowed_user_ids)

    async def is_admin(self, user_id: str) -> bool:
        if user_id in self._allowed:
            return True
        from slack_sdk.errors import SlackApiError

        try:
            response = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", user_id, exc.response.get("error"))
            return False
        user = response.get("user") or {}
        return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
