"""The terminal chat: Folio's first adapter, for trying it out without Discord or Slack."""

from adapters.console.chat import ConsoleChat, console_platform

__all__ = ["ConsoleChat", "console_platform"]
