"""Fixtures for the reliability tests (issue 8: hostile input, faults and load).

`tests/` (the `pdfs` builders), `tests/bot` (FakeEngine), `tests/adapters/slack` and
`tests/adapters/discord` (the fake Slack and the fake Discord) and this
folder (`reliability_hostile`) go on sys.path; settings are always read with a clean environment.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
_TESTS = _HERE.parent
_FAKES = (_TESTS / "adapters" / "slack", _TESTS / "adapters" / "discord")
for _path in (_HERE, *_FAKES, _TESTS / "bot", _TESTS, _TESTS.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from reliability_env import drop_settings_env  # noqa: E402

from bot.app import load_settings  # noqa: E402
from config.settings import Settings  # noqa: E402


@pytest.fixture(scope="module")
def reliability_settings() -> Iterator[Any]:
    """`reliability_settings(data_dir, **overrides)`: Settings read with a clean environment and
    one generator thread (llama.cpp's spinning barriers crawl on shared cores)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        drop_settings_env(monkeypatch)

        def make(data_dir: Path, **overrides: Any) -> Settings:
            generator = {"threads": 1, **overrides.pop("generator", {})}
            return load_settings(data_dir=data_dir, generator=generator, **overrides)

        yield make
