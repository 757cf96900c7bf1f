"""The composition root: settings → engine → bot core → adapters, and their lifecycle.

Everything is built here and passed in; nothing is created at import time. `python -m bot` (the
Procfile's process) runs `run_bot`: every platform (a folder of `adapters/`, see
`adapters.registry`) whose credentials are configured starts, all sharing one queue and one
worker; with none configured, the terminal chat starts. No platform is named here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from adapters.registry import Platform, discover, settings_sections
from bot.core import BotCore
from bot.errors import FolioError, GeneratorCrashed, GeneratorUnavailable
from config import settings as config
from config.settings import Settings
from rag.factory import build_engine

logger = logging.getLogger(__name__)


def load_settings(**overrides: Any) -> Settings:
    """The settings with every platform folder's own section (`[discord]`, `[web]`, ...),
    validated at once; raises ConfigError with one line per problem."""
    return config.load_settings(sections=settings_sections(), **overrides)


def configured_platforms(settings: Settings, found: list[Platform] | None = None) -> list[str]:
    """Chat platforms whose credentials are present in the environment."""
    return [p.name for p in found or discover() if p.role == "chat" and p.configured(settings)]


def build_adapters(settings: Settings, core: BotCore, names: list[str]) -> list[Any]:
    """The adapters of the platforms `names`, in that order (built, not started)."""
    by_name = {p.name: p for p in discover()}
    return [by_name[name].build(core, settings) for name in names]


async def run_bot(settings: Settings, *, console: bool | None = None) -> int:
    """Run until SIGTERM/SIGINT (or, for the terminal chat, until it ends). Returns an exit code."""
    engine = build_engine(settings)
    found = discover()
    chats = configured_platforms(settings, found)
    use_console = console if console is not None else not chats
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
    # The chat platforms configured, what runs beside whatever runs (such as a web page), and the
    # terminal chat when nothing else is there to talk to (or `folio chat`).
    running = [
        p for p in found
        if p.name in chats
        or (p.role == "beside" and p.configured(settings))
        or (p.role == "fallback" and use_console)
    ]
    built = [(p, p.build(core, settings)) for p in running]
    for platform, adapter in built:
        if platform.role != "beside":
            core.register(adapter)  # before the core starts: its stored replies go out at once
    stop = asyncio.Event()
    _install_signal_handlers(stop.set)
    await core.start()
    serving: list[tuple[Platform, Any]] = []
    try:
        for platform, adapter in built:
            if platform.role == "beside":
                if await start_beside(adapter, platform.label):
                    core.register(adapter)  # a page that can't start takes no jobs
                    serving.append((platform, adapter))
            elif platform.role == "chat":
                serving.append((platform, adapter))  # stopped even if its start fails midway
                await adapter.start()
                logger.info("%s adapter started", platform.name)
        logger.info("Folio ready in %.1fs", time.perf_counter() - started)
        chat = next((a for p, a in built if p.role == "fallback"), None)
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
        for platform, adapter in reversed(serving):
            try:
                await adapter.stop()
            except Exception:
                logger.exception("stopping the %s adapter failed", platform.name)
        await core.stop()
        await asyncio.to_thread(engine.close)
        logger.info("Folio stopped")
    return 0


async def start_beside(adapter: Any, label: str) -> bool:
    """Start what runs beside the bot (a web page): a failure costs it, not the bot (one line)."""
    try:
        await adapter.start()
    except FolioError as exc:  # an expected failure, such as a port already in use
        logger.warning("%s not started: %s", label, exc)
        return False
    except Exception:  # a bug in it must not take the chat platforms down with it
        logger.exception("%s not started", label)
        return False
    return True


def _install_signal_handlers(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, callback)
