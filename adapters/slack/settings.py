"""The `[slack]` settings section (env: FOLIO_SLACK__MODE=http, ...), which this folder declares.

Its secrets are fields here but come only from the environment: SLACK_BOT_TOKEN, and
SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode); `SlackAdapter` gets them as
arguments. A config file that contains one is refused (see `config.sections`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from config.sections import SectionSettings, env_secret

_COMMAND = re.compile(r"^/[a-z0-9_\-]{1,31}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class SlackCommands(BaseModel):
    """Slash command names; they must match the ones in slack-manifest.yaml."""

    model_config = ConfigDict(extra="forbid")

    ask: str = "/ask"
    ingest: str = "/ingest"
    docs: str = "/docs"
    forget: str = "/forget"
    cancel: str = "/cancel"
    history: str = "/history"

    @field_validator("*")
    @classmethod
    def _slash_name(cls, value: str) -> str:
        value = value.strip().lower()
        if not _COMMAND.match(value):
            raise ValueError(f"{value!r} is not a slash command name like '/ask'")
        return value


class SlackSettings(SectionSettings):
    bot_token: SecretStr | None = env_secret("SLACK_BOT_TOKEN", "The bot token (xoxb-...).")
    app_token: SecretStr | None = env_secret(
        "SLACK_APP_TOKEN", "Socket Mode's app-level token (xapp-...)."
    )
    signing_secret: SecretStr | None = env_secret(
        "SLACK_SIGNING_SECRET", "HTTP mode: verifies that requests come from Slack."
    )
    mode: Literal["socket", "http"] = Field(
        default="socket",
        description="socket: Socket Mode (SLACK_APP_TOKEN, no public URL needed); "
        "http: Events API over HTTPS (SLACK_SIGNING_SECRET, needs a public URL).",
    )
    commands: SlackCommands = SlackCommands()
    admin_user_ids: list[str] = Field(
        default_factory=list,
        description="Users allowed to ingest and forget besides workspace admins and owners.",
    )
    max_file_mb: float = Field(default=50.0, gt=0, description="Largest PDF accepted for ingest.")
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=3000, ge=0, le=65535, description="0 = any free port.")
    http_path: str = Field(default="/slack/events", pattern=r"^/")
    edit_interval_s: float = Field(
        default=1.0,
        ge=0.0,
        description="Least time between two edits of a streamed answer in Slack, kept by the "
        "core's throttle (Slack allows about one message update per second per channel).",
    )
    message_limit: int = Field(
        default=3000, ge=200, le=40000, description="Split replies longer than this."
    )
    api_base_url: str = Field(
        default="https://slack.com/api/",
        description="The Web API root; only tests point this elsewhere.",
    )
    max_rate_limit_retries: int = Field(default=3, ge=0, le=10)
    connect_timeout_s: float = Field(
        default=30.0, gt=0, description="start() fails if Socket Mode is not connected by then."
    )

    @field_validator("admin_user_ids")
    @classmethod
    def _user_ids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _USER_ID.match(v)]
        if bad:
            raise ValueError(f"not Slack user ids (like U0123ABCD): {', '.join(bad)}")
        return value

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)
