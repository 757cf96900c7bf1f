"""Fixtures for the RAG core tests: `tests/` on sys.path (for the `pdfs` builders) and settings
that ignore the developer's FOLIO_* environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))
_ROOT = _TESTS.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from postgres_fixtures import postgres_server, postgres_url  # noqa: E402, F401

from bot.app import load_settings  # noqa: E402
from config.settings import Settings  # noqa: E402

# Variables that would change what load_settings() returns.
_SETTINGS_ENV = (
    "FOLIO_",
    "DISCORD_BOT_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
)


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_SETTINGS_ENV):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def settings_factory() -> Iterator[Any]:
    """`settings_factory(data_dir, **overrides)`: Settings read with a clean environment."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        clean_environment(monkeypatch)

        def make(data_dir: Path, **overrides: Any) -> Settings:
            # One generator thread: llama.cpp's spinning thread barriers slow down many times
            # over when the cores are shared (CI, parallel runs); a 135M model hardly needs two.
            generator = {"threads": 1, **overrides.pop("generator", {})}
            return load_settings(data_dir=data_dir, generator=generator, **overrides)

        yield make
