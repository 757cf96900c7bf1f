"""The terminal chat: Folio's first adapter, for trying it out without Discord or Slack."""

from adapters.console.chat import ConsoleChat

__all__ = ["ConsoleChat"]
