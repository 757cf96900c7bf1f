"""The platforms Folio can serve, found at run time: a new platform is one folder.

Every package under `adapters/` that has a `platform.py` with a `platform()` function is a
platform; `bot.app` asks each whether the settings configure it and builds only those, so a
platform library is imported only when it is used. A platform may declare its own settings
section (`[<name>]`, with its secrets from the environment; see `config.sections`), which
`bot.app.load_settings` validates with the rest at start. Nothing is registered at import time:
the folders are looked up when `discover()` is called.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from config.sections import SectionSettings

if TYPE_CHECKING:
    from config.settings import Settings

# chat: runs when its credentials are configured; beside: runs beside whatever else runs and
# may fail to start without stopping the rest (the web page); fallback: the terminal chat, when
# no chat platform runs (or `folio chat`).
Role = Literal["chat", "beside", "fallback"]


@dataclass(frozen=True, slots=True)
class Platform:
    """One platform as the composition root sees it: when it runs and how it is built."""

    name: str
    role: Role
    label: str  # for people: "Discord", "the web page"
    configured: Callable[[Settings], bool]
    build: Callable[[Any, Settings], Any]  # (the bot core, settings) -> the adapter
    settings: type[SectionSettings] | None = None  # its section, `[<name>]`; None: it has none


def discover() -> list[Platform]:
    """Every platform folder's `platform()`, in folder order."""
    import adapters

    found = []
    for module in sorted(pkgutil.iter_modules(adapters.__path__), key=lambda m: m.name):
        if not module.ispkg:
            continue
        name = f"adapters.{module.name}.platform"
        if importlib.util.find_spec(name) is None:
            continue
        found.append(importlib.import_module(name).platform())
    return found


def settings_sections(found: list[Platform] | None = None) -> dict[str, type[SectionSettings]]:
    """The settings section each platform declares, by platform name."""
    return {p.name: p.settings for p in (discover() if found is None else found) if p.settings}
