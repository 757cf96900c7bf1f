"""Discord for `bot.app`: its `[discord]` section, and configured by DISCORD_BOT_TOKEN;
discord.py loads only then."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.discord.settings import DiscordSettings
from adapters.registry import Platform

if TYPE_CHECKING:
    from config.settings import Settings


def platform() -> Platform:
    return Platform("discord", "chat", "Discord", _configured, _build, DiscordSettings)


def _configured(settings: Settings) -> bool:
    return settings.section("discord", DiscordSettings).token is not None


def _build(core: Any, settings: Settings) -> Any:
    from adapters.discord.adapter import DiscordAdapter

    section = settings.section("discord", DiscordSettings)
    token = section.token.get_secret_value() if section.token is not None else ""
    return DiscordAdapter(core, section, token=token)
