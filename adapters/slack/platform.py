"""Slack for `bot.app`: configured by SLACK_BOT_TOKEN plus SLACK_APP_TOKEN (Socket Mode) or
SLACK_SIGNING_SECRET (HTTP mode); slack-bolt loads only then."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.registry import Platform

if TYPE_CHECKING:
    from config.settings import Settings


def platform() -> Platform:
    return Platform("slack", "chat", "Slack", _configured, _build)


def _configured(settings: Settings) -> bool:
    return settings.slack_bot_token is not None and (
        settings.slack_app_token is not None
        or (settings.slack.mode == "http" and settings.slack_signing_secret is not None)
    )


def _build(core: Any, settings: Settings) -> Any:
    from adapters.slack import SlackAdapter

    return SlackAdapter(
        core,
        settings.slack,
        bot_token=settings.slack_bot_token,
        app_token=settings.slack_app_token,
        signing_secret=settings.slack_signing_secret,
    )
