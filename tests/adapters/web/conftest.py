"""Fixtures for the web page tests (see web_harness.py): `tests/`, `tests/bot` and this folder
on sys.path, and `start_site`, which stops every site it started."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_TESTS = _HERE.parents[1]
for extra in (_TESTS.parent, _TESTS, _TESTS / "bot", _HERE):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from web_harness import Sites, StartSite  # noqa: E402


@pytest.fixture
async def start_site(tmp_path: Path) -> AsyncIterator[StartSite]:
    sites = Sites(tmp_path)
    yield sites.start
    await sites.stop()
