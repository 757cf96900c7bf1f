"""The environment variables that change what `load_settings()` returns, and a way to drop them."""

from __future__ import annotations

import os

import pytest

SETTINGS_ENV = (
    "FOLIO_",
    "DISCORD_BOT_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
)


def drop_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(SETTINGS_ENV):
            monkeypatch.delenv(name)


def clean_env() -> dict[str, str]:
    """A copy of os.environ without them (for subprocesses)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_ENV)}
