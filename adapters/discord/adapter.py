"""The Discord adapter: a discord.py client wired to Folio's core.

    discord = settings.section("discord", DiscordSettings)   # adapters/discord/settings.py
    adapter = DiscordAdapter(core, discord, token=discord.token.get_secret_value())
    await adapter.start()   # logs in and registers commands, then runs the Gateway in a task
    ...
    await adapter.stop()    # closes the Gateway and the HTTP session

The calls the core makes for a job (acknowledge, statuses, partial text, the final reply) are
`DiscordDelivery`'s; this class adds the Gateway's lifecycle. discord.py is imported only when
the adapter starts, so the rest of Folio runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from adapters.discord.delivery import PLATFORM, DiscordDelivery
from adapters.discord.ports import CorePort
from adapters.discord.settings import DiscordSettings
from config.errors import ConfigError

if TYPE_CHECKING:
    from adapters.discord.client import FolioClient

log = logging.getLogger(__name__)

__all__ = ["PLATFORM", "DiscordAdapter"]

_STOP_TIMEOUT_S = 10.0


class DiscordAdapter(DiscordDelivery):
    """Folio on Discord: every guild is its own collection (`discord-<guild id>`)."""

    def __init__(self, core: CorePort, settings: DiscordSettings, *, token: str) -> None:
        if not token:
            raise ConfigError("Discord needs DISCORD_BOT_TOKEN (your application's bot token).")
        super().__init__(replies=core, edit_interval_s=settings.edit_interval_s)
        self._core = core
        self.settings = settings
        self._token = token
        self._client: FolioClient | None = None
        self._runner: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in and register the slash commands; the Gateway then runs (and reconnects) in a task.

        Raises ConfigError if Discord refuses the token.
        """
        try:
            import discord

            from adapters.discord.client import FolioClient
            from adapters.discord.handlers import DiscordHandlers
        except ImportError as exc:  # pragma: no cover - discord.py is a declared dependency
            raise ConfigError("The Discord adapter needs: pip install discord.py") from exc

        client = FolioClient(sync_commands=self.settings.sync_commands)
        client.attach(DiscordHandlers(self._core, self.settings, client, self))
        self._client = client
        self._runner = asyncio.create_task(self._run(client), name="discord-gateway")
        logged_in = asyncio.create_task(client.logged_in.wait())
        await asyncio.wait({self._runner, logged_in}, return_when=asyncio.FIRST_COMPLETED)
        if not logged_in.done():
            logged_in.cancel()
            error = self._runner.exception()
            self._client = self._runner = None
            if isinstance(error, discord.LoginFailure):
                raise ConfigError("Discord rejected DISCORD_BOT_TOKEN.") from None
            raise ConfigError(f"Could not connect to Discord: {error}") from error

    async def _run(self, client: FolioClient) -> None:
        async with client:
            await client.start(self._token, reconnect=True)

    async def stop(self) -> None:
        """Close the Gateway and the HTTP session; safe to call twice or before start."""
        client, runner = self._client, self._runner
        self._client = self._runner = None
        if client is not None:
            await client.close()
        if runner is not None:
            try:
                await asyncio.wait_for(runner, _STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("Discord: the gateway task did not stop in time; cancelled")
            except Exception:
                log.exception("Discord: the gateway task failed")
            finally:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner

    @property
    def client(self) -> FolioClient:
        if self._client is None:
            raise RuntimeError("DiscordAdapter.start() has not been called")
        return self._client
