"""SlackSettings: what the lead folds into config as `[slack]` / FOLIO_SLACK__…."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.slack import SlackSettings
from adapters.slack.files import file_id_from_link


def test_defaults_are_socket_mode_with_the_manifest_commands() -> None:
    settings = SlackSettings()
    assert settings.mode == "socket"
    assert settings.commands.ask == "/ask"
    assert settings.max_file_bytes == 50 * 1024 * 1024


def test_bad_values_are_refused_with_a_reason() -> None:
    with pytest.raises(ValidationError, match="slash command"):
        SlackSettings.model_validate({"commands": {"ask": "ask me"}})
    with pytest.raises(ValidationError, match="not Slack user ids"):
        SlackSettings(admin_user_ids=["alice"])
    with pytest.raises(ValidationError):
        SlackSettings.model_validate({"mode": "webhook"})
    assert SlackSettings.model_validate({"commands": {"ask": "/Folio"}}).commands.ask == "/folio"


@pytest.mark.parametrize(
    ("text", "file_id"),
    [
        ("<https://acme.slack.com/files/U0ABC/F0123ABCD/guide.pdf>", "F0123ABCD"),
        ("https://acme.slack.com/files/U0ABC/F0123ABCD/guide.pdf", "F0123ABCD"),
        ("F0123ABCD", "F0123ABCD"),
        ("guide.pdf", None),
        ("", None),
    ],
)
def test_file_links(text: str, file_id: str | None) -> None:
    assert file_id_from_link(text) == file_id
