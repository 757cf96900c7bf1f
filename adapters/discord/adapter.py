"""The Discord adapter: a discord.py client wired to Folio's core.

    token = settings.discord_token.get_secret_value()
    adapter = DiscordAdapter(core, settings.discord, token=token)
    await adapter.start()   # logs in and registers commands, then runs the Gateway in a task
    ...
    await adapter.stop()    # closes the Gateway and the HTTP session

discord.py is imported only when the adapter starts, so the rest of Folio runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters.discord.ports import CorePort
from bot.jobs import Job
from bot.render import render_ingest_progress
from config.discord import DiscordSettings
from config.errors import ConfigError
from rag.types import Answer, IngestReport

if TYPE_CHECKING:
    from adapters.discord.client import FolioClient
    from adapters.discord.delivery import DiscordDelivery

log = logging.getLogger(__name__)

PLATFORM = "discord"
_STOP_TIMEOUT_S = 10.0


class DiscordAdapter:
    """Folio on Discord: every guild is its own collection (`discord-<guild id>`)."""

    platform = PLATFORM

    def __init__(
        self,
        core: CorePort,
        settings: DiscordSettings,
        *,
        token: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token:
            raise ConfigError("Discord needs DISCORD_BOT_TOKEN (your application's bot token).")
        self._core = core
        self.settings = settings
        self._token = token
        self._clock = clock  # for the edit throttle
        self._client: FolioClient | None = None
        self._delivery: DiscordDelivery | None = None
        self._runner: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in and register the slash commands; the Gateway then runs (and reconnects) in a task.

        Raises ConfigError if Discord refuses the token.
        """
        try:
            import discord

            from adapters.discord.client import FolioClient
            from adapters.discord.delivery import DiscordDelivery
            from adapters.discord.handlers import DiscordHandlers
        except ImportError as exc:  # pragma: no cover - discord.py is a declared dependency
            raise ConfigError("The Discord adapter needs: pip install discord.py") from exc

        client = FolioClient(sync_commands=self.settings.sync_commands)
        delivery = DiscordDelivery(
            client,
            edit_interval_s=self.settings.edit_interval_s,
            replies=self._core,
            clock=self._clock,
        )
        client.attach(DiscordHandlers(self._core, self.settings, client, delivery))
        self._client, self._delivery = client, delivery
        self._runner = asyncio.create_task(self._run(client), name="discord-gateway")
        logged_in = asyncio.create_task(client.logged_in.wait())
        await asyncio.wait({self._runner, logged_in}, return_when=asyncio.FIRST_COMPLETED)
        if not logged_in.done():
            logged_in.cancel()
            error = self._runner.exception()
            self._client = self._delivery = self._runner = None
            if isinstance(error, discord.LoginFailure):
                raise ConfigError("Discord rejected DISCORD_BOT_TOKEN.") from None
            raise ConfigError(f"Could not connect to Discord: {error}") from error

    async def _run(self, client: FolioClient) -> None:
        async with client:
            await client.start(self._token, reconnect=True)

    async def stop(self) -> None:
        """Close the Gateway and the HTTP session; safe to call twice or before start."""
        client, runner = self._client, self._runner
        self._client = self._delivery = self._runner = None
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

    def _deliver(self) -> DiscordDelivery:
        if self._delivery is None:
            raise RuntimeError("DiscordAdapter.start() has not been called")
        return self._delivery

    # ---- adapters.base.Adapter: the core's calls for a job ---------------------------------------

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        await self._deliver().acknowledge(job, position, eta_s)

    async def post_status(self, job: Job, text: str) -> None:
        await self._deliver().status(job, text)

    async def stream_partial(self, job: Job, text: str) -> None:
        await self._deliver().partial(job, text)

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        await self._deliver().status(job, render_ingest_progress(name, done, total))

    async def post_answer(self, job: Job, answer: Answer) -> None:
        await self._deliver().answer(job, answer)

    async def post_ingest_report(self, job: Job, report: IngestReport) -> None:
        await self._deliver().ingest_report(job, report)

    async def post_notice(self, job: Job, text: str) -> None:
        await self._deliver().notice(job, text)

    async def post_error(self, job: Job, message: str) -> None:
        await self._deliver().error(job, message)

