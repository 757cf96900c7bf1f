"""slack-manifest.yaml must match what the adapter listens for, or installing it silently breaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: in the dev extra

from adapters.slack import SlackSettings

MANIFEST = Path(__file__).resolve().parents[3] / "slack-manifest.yaml"


@pytest.fixture
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return data


def test_commands_match_the_default_settings(manifest: dict[str, Any]) -> None:
    declared = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert declared == set(SlackSettings().commands.model_dump().values())


def test_events_scopes_and_socket_mode(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.im"}
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "files:read", "users:read"} <= scopes
