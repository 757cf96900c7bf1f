"""The Slack adapter: a Bolt `AsyncApp` wired to Folio's core, over Socket Mode (default) or HTTP.

    slack = settings.section("slack", SlackSettings)        # adapters/slack/settings.py
    adapter = SlackAdapter(core, slack, bot_token=slack.bot_token,
                           app_token=slack.app_token,            # Socket Mode
                           signing_secret=slack.signing_secret)  # HTTP mode
    core.register(adapter)     # before start(): events may arrive as soon as it returns
    await adapter.start()      # checks the tokens, connects, returns; runs beside other adapters
    ...
    await adapter.stop()       # before core.stop()

slack_bolt and slack_sdk are imported only when the adapter starts, so the rest of Folio runs
without them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import SecretStr

from adapters.base import StreamLimits
from adapters.slack.admin import AdminCheck
from adapters.slack.delivery import SlackDelivery
from adapters.slack.files import FileRejected, SlackFile, download_pdf
from adapters.slack.listeners import PLATFORM, CorePort, SlackListeners
from adapters.slack.outbox import SlackOutbox
from adapters.slack.settings import SlackSettings
from bot.jobs import Attachment
from config.errors import ConfigError, FolioError

if TYPE_CHECKING:
    from aiohttp import web
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.http_retry.async_handler import AsyncRetryHandler
    from slack_sdk.web.async_client import AsyncWebClient
    from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger(__name__)


def _retry_handlers(max_rate_limit_retries: int) -> list[AsyncRetryHandler]:
    from slack_sdk.http_retry.builtin_async_handlers import (
        AsyncConnectionErrorRetryHandler,
        AsyncRateLimitErrorRetryHandler,
        AsyncServerErrorRetryHandler,
    )

    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=max_rate_limit_retries),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]


def _reveal(secret: str | SecretStr | None) -> str | None:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


class SlackAdapter(SlackDelivery):
    """Folio in one Slack workspace (each workspace's documents are collection `slack-<team>`).

    The calls the core makes for a job (acknowledge, statuses, partial text, the final reply)
    are `SlackDelivery`'s; this class adds the Bolt app's lifecycle.
    """

    platform = PLATFORM

    def __init__(
        self,
        core: CorePort,
        settings: SlackSettings,
        *,
        bot_token: str | SecretStr | None,
        app_token: str | SecretStr | None = None,
        signing_secret: str | SecretStr | None = None,
    ) -> None:
        bot_token, app_token, signing_secret = (
            _reveal(bot_token),
            _reveal(app_token),
            _reveal(signing_secret),
        )
        if not bot_token:
            raise ConfigError("Slack needs SLACK_BOT_TOKEN (the xoxb- token of the installed app).")
        if settings.mode == "socket" and not app_token:
            raise ConfigError(
                "Slack Socket Mode needs SLACK_APP_TOKEN (an xapp- token with connections:write); "
                "or set FOLIO_SLACK__MODE=http with SLACK_SIGNING_SECRET."
            )
        if settings.mode == "http" and not signing_secret:
            raise ConfigError(
                "Slack HTTP mode needs SLACK_SIGNING_SECRET (the app's Basic Information page)."
            )
        super().__init__(
            replies=core, limits=StreamLimits(settings.edit_interval_s, settings.message_limit)
        )
        self._core = core
        self.settings = settings
        self._bot_token = bot_token
        self._app_token = app_token
        self._signing_secret = signing_secret
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._http: web.AppRunner | None = None
        self.app: AsyncApp | None = None
        self.bot_user_id = ""
        self.http_port: int | None = None  # the bound port in HTTP mode (useful with port 0)

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token, build the Bolt app and connect; returns once events can arrive."""
        try:
            from slack_bolt.async_app import AsyncApp
            from slack_sdk.errors import SlackApiError
            from slack_sdk.web.async_client import AsyncWebClient
        except ImportError as exc:  # pragma: no cover - both are declared dependencies
            raise ConfigError("The Slack adapter needs: pip install slack-bolt slack-sdk") from exc

        self._session = aiohttp.ClientSession()
        retries = _retry_handlers(self.settings.max_rate_limit_retries)
        self._client = AsyncWebClient(
            token=self._bot_token, base_url=self.settings.api_base_url, retry_handlers=retries
        )
        try:
            auth = await self._client.auth_test()
        except SlackApiError as exc:
            await self._close_session()
            raise ConfigError(
                f"Slack rejected SLACK_BOT_TOKEN ({exc.response.get('error')})."
            ) from None
        self.bot_user_id = str(auth.get("user_id") or "")
        log.info("Slack: connected as %s to %s", auth.get("user"), auth.get("team"))

        outbox = SlackOutbox(self._client, self._webhook, message_limit=self.settings.message_limit)
        self._attached_outbox = outbox
        listeners = SlackListeners(
            core=self._core,
            settings=self.settings,
            outbox=outbox,
            delivery=self,
            admins=AdminCheck(self._client, self.settings.admin_user_ids),
            fetch=self.fetch_attachment,
        )
        http = self.settings.mode == "http"
        self.app = AsyncApp(
            name="folio",
            client=self._client,
            signing_secret=self._signing_secret or "",
            request_verification_enabled=http,
            ssl_check_enabled=http,
            url_verification_enabled=http,
        )
        listeners.register(self.app)
        try:
            if http:
                await self._start_http(self.app)
            else:
                await self._start_socket(self.app)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Disconnect and release every connection; safe to call twice or after a failed start."""
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        await self._close_session()

    async def _close_session(self) -> None:
        if self._client is not None and self._client.session is not None:
            await self._client.session.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _start_socket(self, app: AsyncApp) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
        from slack_sdk.errors import SlackApiError
        from slack_sdk.web.async_client import AsyncWebClient

        # Its own Web API client (the app token, not the bot token, opens connections).
        connections_client = AsyncWebClient(
            base_url=self.settings.api_base_url,
            retry_handlers=_retry_handlers(self.settings.max_rate_limit_retries),
        )
        assert self._app_token, "checked in __init__"
        # Ask for the first websocket URL ourselves: slack_sdk retries a rejected app token
        # forever, and a wrong token should stop Folio with a message instead.
        try:
            opened = await connections_client.apps_connections_open(app_token=self._app_token)
        except SlackApiError as exc:
            raise ConfigError(
                f"Slack rejected SLACK_APP_TOKEN ({exc.response.get('error')}); it must be an "
                "xapp- token with the connections:write scope."
            ) from None
        self._socket = AsyncSocketModeHandler(
            app, app_token=self._app_token, web_client=connections_client
        )
        self._socket.client.wss_uri = str(opened["url"])
        try:
            await asyncio.wait_for(
                self._socket.connect_async(),  # type: ignore[no-untyped-call]
                self.settings.connect_timeout_s,
            )
        except TimeoutError:
            raise FolioError(
                f"Could not open Slack's Socket Mode connection within "
                f"{self.settings.connect_timeout_s:g} s; is the network up?"
            ) from None

    async def _start_http(self, app: AsyncApp) -> None:
        from aiohttp import web

        from adapters.slack.http_mode import build_web_app

        runner = web.AppRunner(build_web_app(app, self.settings.http_path), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        self._http = runner
        sockets = getattr(site._server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.http_port
        log.info(
            "Slack: listening on %s:%s%s",
            self.settings.http_host,
            self.http_port,
            self.settings.http_path,
        )

    # ---- plumbing -------------------------------------------------------------------------------

    def _webhook(self, url: str) -> AsyncWebhookClient:
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        return AsyncWebhookClient(
            url,
            session=self._session,
            retry_handlers=_retry_handlers(self.settings.max_rate_limit_retries),
        )

    async def fetch_attachment(self, source: Mapping[str, Any]) -> Attachment:
        """Download a PDF shared in Slack (a file object from an event, or just `{"id": F…}`).

        Raises FileRejected (a FolioError) with the reason: too large (checked on Slack's reported
        size before downloading, and while downloading), not a PDF, or Slack's sign-in page.
        """
        if self._session is None or self._client is None:
            raise RuntimeError("SlackAdapter.start() has not been called")
        from slack_sdk.errors import SlackApiError

        file = SlackFile.from_api(dict(source))
        if not file.url or file.size is None or source.get("file_access") == "check_file_info":
            try:
                response = await self._client.files_info(file=file.id)
            except SlackApiError as exc:
                raise FileRejected(
                    f"{file.name}: Slack would not describe this file "
                    f"({exc.response.get('error')}); is the app in this channel?"
                ) from None
            file = SlackFile.from_api(response["file"])
        data = await download_pdf(
            self._session, file, token=self._bot_token, max_bytes=self.settings.max_file_bytes
        )
        return Attachment(file.name, data)
