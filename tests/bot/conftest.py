"""Fixtures for the bot core tests: a core on a temporary database, started and always stopped."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# The repository root, so `bot`, `rag` and `adapters` import when pytest runs from anywhere.
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from fakes import StartCore  # noqa: E402

from adapters.base import Adapter  # noqa: E402
from bot.core import BotCore, CoreOptions  # noqa: E402
from bot.ports import AnswerEngine  # noqa: E402


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.sqlite"


@pytest.fixture
async def start_core(db_path: Path) -> AsyncIterator[StartCore]:
    """`await start_core(engine, adapter, ..., **options)`: a started core, stopped at teardown."""
    cores: list[BotCore] = []

    async def start(engine: AnswerEngine, *adapters: Adapter, **options: Any) -> BotCore:
        options.setdefault("edit_interval_s", 0.0)
        options.setdefault("stop_grace_s", 2.0)
        core = BotCore(engine, db_path, CoreOptions(**options))
        for adapter in adapters:
            core.register(adapter)
        await core.start()
        cores.append(core)
        return core

    yield start
    for core in cores:
        await core.stop()
