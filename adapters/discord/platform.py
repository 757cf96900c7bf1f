"""Discord for `bot.app`: configured by DISCORD_BOT_TOKEN; discord.py loads only then."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.registry import Platform

if TYPE_CHECKING:
    from config.settings import Settings


def platform() -> Platform:
    return Platform("discord", "chat", "Discord", _configured, _build)


def _configured(settings: Settings) -> bool:
    return settings.discord_token is not None


def _build(core: Any, settings: Settings) -> Any:
    from adapters.discord.adapter import DiscordAdapter

    assert settings.discord_token is not None
    return DiscordAdapter(core, settings.discord, token=settings.discord_token.get_secret_value())
