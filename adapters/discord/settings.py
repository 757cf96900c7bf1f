"""The `[discord]` settings section (env: FOLIO_DISCORD__...), which this folder declares.

The bot token is a field here but comes only from the environment (DISCORD_BOT_TOKEN); a config
file that contains it is refused (see `config.sections`).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from config.sections import SectionSettings, env_secret


class DiscordSettings(SectionSettings):
    """Who may administer the bot, where DMs go, and the limits on uploads and edits."""

    token: SecretStr | None = env_secret("DISCORD_BOT_TOKEN", "The application's bot token.")

    admin_user_ids: list[int] = Field(
        default_factory=list,
        description="Discord user ids allowed to run admin commands in every guild, in addition "
        "to members with the Manage Server permission.",
    )
    admin_role_ids: list[int] = Field(
        default_factory=list,
        description="Role ids whose members may run admin commands (in the guild of the role).",
    )
    dm_collection: str | None = Field(
        default=None,
        description="The collection that direct messages ask; empty = the bot declines DMs.",
    )
    max_attachment_mb: float = Field(
        default=25.0,
        gt=0,
        description="Largest PDF accepted from chat; checked against the attachment's declared "
        "size before anything is downloaded.",
    )
    edit_interval_s: float = Field(
        default=1.2,
        ge=0.2,
        description="Least time between two edits of a streamed answer (Discord allows about "
        "5 edits per 5 s per channel).",
    )
    sync_commands: bool = Field(
        default=True,
        description="Register the slash commands with Discord at start (a bulk overwrite).",
    )

    @field_validator("dm_collection")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value

    @property
    def max_attachment_bytes(self) -> int:
        return int(self.max_attachment_mb * 1024 * 1024)
