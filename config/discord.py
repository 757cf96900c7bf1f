"""Settings of the Discord adapter, part of `config.settings.Settings` as `discord`.

The bot token is not here: it comes only from the environment (DISCORD_BOT_TOKEN), read by
`config.settings.load_settings()` into `Settings.discord_token`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class DiscordSettings(BaseModel):
    """Who may administer the bot, where DMs go, and the limits on uploads and edits."""

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


def guild_collection(guild_id: int) -> str:
    """Every guild has its own collection of documents."""
    return f"discord-{guild_id}"
