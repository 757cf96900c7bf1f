"""What the commands share: the engine they open, and how they print."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from config.settings import Settings

if TYPE_CHECKING:
    from rag.engine import RagEngine


def open_engine(settings: Settings) -> RagEngine:
    from rag.factory import build_engine

    return build_engine(settings)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def short_name(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def print_json(value: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(value, ensure_ascii=False, indent=None) + "\n")
