"""Slack for `bot.app`: its `[slack]` section, and configured by SLACK_BOT_TOKEN plus
SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode); slack-bolt loads only then."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.registry import Platform
from adapters.slack.settings import SlackSettings

if TYPE_CHECKING:
    from config.settings import Settings


def platform() -> Platform:
    return Platform("slack", "chat", "Slack", _configured, _build, SlackSettings)


def _configured(settings: Settings) -> bool:
    slack = settings.section("slack", SlackSettings)
    return slack.bot_token is not None and (
        slack.app_token is not None
        or (slack.mode == "http" and slack.signing_secret is not None)
    )


def _build(core: Any, settings: Settings) -> Any:
    from adapters.slack import SlackAdapter

    slack = settings.section("slack", SlackSettings)
    return SlackAdapter(
        core,
        slack,
        bot_token=slack.bot_token,
        app_token=slack.app_token,
        signing_secret=slack.signing_secret,
    )
