"""Who is an admin: Manage Server in that guild, or a user/role id allowed in the settings.

Checked on our side before every admin command; Discord's own command permissions are a
convenience a guild can change, not the gate.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters.discord.settings import DiscordSettings


def is_admin(
    *,
    user_id: int,
    role_ids: Iterable[int],
    manage_guild: bool,
    in_guild: bool,
    settings: DiscordSettings,
) -> bool:
    """A configured admin user anywhere; in a guild, also Manage Server or an admin role."""
    if user_id in settings.admin_user_ids:
        return True
    if not in_guild:
        return False
    return manage_guild or any(role in settings.admin_role_ids for role in role_ids)


REFUSAL = (
    "Only admins can do that: members with Manage Server, or the users and roles listed in "
    "the bot's settings."
)
