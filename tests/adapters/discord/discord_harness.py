"""The test harness shared by the Discord tests: a started bot on the fake Discord, and checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fake_discord import FakeDiscord
from fake_discord_core import FakeCore

from adapters.discord.adapter import DiscordAdapter

TOKEN = "fake-token"


Json = dict[str, Any]


@dataclass
class Bot:
    """A started DiscordAdapter on the fake Discord, with one guild and a few people."""

    fake: FakeDiscord
    core: FakeCore
    adapter: DiscordAdapter
    guild: Json
    channel: Json
    alice: Json = field(init=False)
    boss: Json = field(init=False)  # has the "admins" role (Manage Server)

    def __post_init__(self) -> None:
        self.alice = self.fake.make_user("alice")
        self.boss = self.fake.make_user("boss")

    @property
    def me(self) -> Json:
        return self.fake.bot_user

    @property
    def admin_role(self) -> int:
        return self.fake.role_id(self.guild, "admins")

    async def mention(self, text: str, *, author: Json | None = None, **kw: Any) -> Json:
        """`@Folio text` in the guild's text channel (or `channel=`)."""
        channel = kw.pop("channel", self.channel)
        return await self.fake.user_message(
            channel, author or self.alice, f"<@{self.me['id']}> {text}", mentions=[self.me], **kw
        )


StartBot = Callable[..., Awaitable[Bot]]


def assert_no_mentions_anywhere(fake: FakeDiscord) -> None:
    """Every message the bot sent or edited disabled all mentions; none was over 2,000 chars."""
    for request in fake.sending_requests():
        body = request.body
        data = body.get("data", {}) if request.path.endswith("/callback") else body
        mentions = data.get("allowed_mentions")
        assert mentions is not None and mentions.get("parse") == [], request
        assert not (mentions.get("users") or mentions.get("roles") or mentions.get("replied_user"))
        assert len(data.get("content") or "") <= 2000, request
