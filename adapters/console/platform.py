"""The terminal chat for `bot.app`: when no chat platform is configured, or `folio chat`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.registry import Platform

if TYPE_CHECKING:
    from config.settings import Settings


def platform() -> Platform:
    return Platform("console", "fallback", "terminal chat", _configured, _build)


def _configured(settings: Settings) -> bool:
    return True  # a terminal needs nothing


def _build(core: Any, settings: Settings) -> Any:
    from adapters.console import ConsoleChat, console_platform

    return ConsoleChat(
        core,
        collection=settings.default_collection,
        platform=console_platform(shared_queue=settings.queue.backend == "redis"),
    )
