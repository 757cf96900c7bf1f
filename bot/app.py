"""The composition root: settings → engine → bot core → adapters, and their lifecycle.

Everything is built here and passed in; nothing is created at import time. `python -m bot` (the
Procfile's process) runs `run_bot`: every adapter whose credentials are configured starts, all
sharing one queue and one worker; with none configured, the terminal chat starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from bot.core import BotCore
from bot.errors import GeneratorCrashed, GeneratorUnavailable
from config.settings import Settings
from rag.factory import build_engine

logger = logging.getLogger(__name__)


def configured_platforms(settings: Settings) -> list[str]:
    """Platforms whose credentials are present in the environment."""
    platforms = []
    if settings.discord_token is not None:
        platforms.append("discord")
    if settings.slack_bot_token is not None and (
        settings.slack_app_token is not None
        or (settings.slack.mode == "http" and settings.slack_signing_secret is not None)
    ):
        platforms.append("slack")
    return platforms


def _web_adapter(settings: Settings, core: BotCore) -> Any:
    from adapters.web import WebAdapter, WebOptions, web_platform

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    web = settings.web
    return WebAdapter(core, WebOptions(
        host=web.host,
        port=web.port,
        collections=tuple(settings.web_collections),
        max_file_bytes=settings.ingest.max_file_bytes,
        data_dir=settings.data_dir,
        password=secret(settings.web_password),
        admin_token=secret(settings.web_admin_token),
        secret=secret(settings.web_secret),
        questions_per_minute=web.questions_per_minute,
        writes_per_minute=web.writes_per_minute,
        session_days=web.session_days,
        history_limit=web.history_limit,
        answer_timeout_s=web.answer_timeout_s,
        platform=web_platform(shared_queue=settings.queue.backend == "redis"),
    ))


def _build_adapters(settings: Settings, core: BotCore, platforms: list[str]) -> list[Any]:
    adapters: list[Any] = []
    if "slack" in platforms:
        from adapters.slack import SlackAdapter

        adapters.append(
            SlackAdapter(
                core,
                settings.slack,
                bot_token=settings.slack_bot_token,
                app_token=settings.slack_app_token,
                signing_secret=settings.slack_signing_secret,
            )
        )
    if "discord" in platforms:
        from adapters.discord.adapter import DiscordAdapter

        assert settings.discord_token is not None
        adapters.append(
            DiscordAdapter(core, settings.discord, token=settings.discord_token.get_secret_value())
        )
    if "web" in platforms:
        adapters.append(_web_adapter(settings, core))
    return adapters


async def run_bot(settings: Settings, *, console: bool | None = None) -> int:
    """Run until SIGTERM/SIGINT (or, for the terminal chat, until it ends). Returns an exit code."""
    engine = build_engine(settings)
    platforms = configured_platforms(settings)
    use_console = console if console is not None else not platforms
    started = time.perf_counter()
    # Load and warm the models once, on the engine's side, before anyone is told we are ready.
    try:
        await asyncio.to_thread(engine.warm_up)
    except GeneratorUnavailable as exc:
        # The bot still starts: questions wait and are retried, then fail with this same line.
        logger.warning("%s Questions will be retried until it answers.", exc.message)
    except GeneratorCrashed as exc:
        # The platforms still connect; each question gets a fresh model process (and one line
        # if that crashes too), and `folio doctor` names the cause.
        logger.error("the model crashed while warming up (%s); run `folio doctor`", exc.reason)
    logger.info("models ready in %.1fs (%s)", time.perf_counter() - started, engine.model_name)
    core = BotCore.from_settings(settings, engine)
    # The web page runs beside whatever else runs (with no platform, beside the terminal chat).
    adapters = _build_adapters(settings, core, [*platforms, *(["web"] if settings.web.enabled else [])])
    chat = None
    if use_console:
        from adapters.console import ConsoleChat, console_platform

        chat = ConsoleChat(
            core,
            collection=settings.default_collection,
            platform=console_platform(shared_queue=settings.queue.backend == "redis"),
        )
        adapters.append(chat)
    for adapter in adapters:
        if adapter.platform.startswith("web"):
            continue  # registered once it listens (a page that can't start takes no jobs)
        core.register(adapter)
    stop = asyncio.Event()
    _install_signal_handlers(stop.set)
    await core.start()
    try:
        for adapter in list(adapters):
            if adapter is chat:
                continue
            if adapter.platform.startswith("web"):
                if await _start_web(adapter):
                    core.register(adapter)
                else:
                    adapters.remove(adapter)
                continue
            await adapter.start()
            logger.info("%s adapter started", adapter.platform)
        logger.info("Folio ready in %.1fs", time.perf_counter() - started)
        if chat is not None:
            chat_task = asyncio.create_task(chat.run(), name="folio-console")
            stop_task = asyncio.create_task(stop.wait())
            await asyncio.wait({chat_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
            if not chat_task.done():
                chat_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chat_task
        else:
            await stop.wait()
    finally:
        for adapter in reversed(adapters):
            if adapter is not chat:
                try:
                    await adapter.stop()
                except Exception:
                    logger.exception("stopping the %s adapter failed", adapter.platform)
        await core.stop()
        await asyncio.to_thread(engine.close)
        logger.info("Folio stopped")
    return 0


async def _start_web(adapter: Any) -> bool:
    """Start the web page; a port already in use costs the page, not the bot (one line)."""
    try:
        await adapter.start()
    except OSError as exc:
        options = adapter.options
        logger.warning(
            "web page not started: cannot listen on %s:%s (%s); set FOLIO_WEB__PORT to another "
            "port, or FOLIO_WEB__ENABLED=false", options.host, options.port,
            exc.strerror or exc,
        )
        return False
    except Exception:  # a bug in the page must not take Discord and Slack down with it
        logger.exception("web page not started")
        return False
    print(f"Folio web page: {adapter.url}", file=sys.stderr, flush=True)
    return True


def _install_signal_handlers(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, callback)
