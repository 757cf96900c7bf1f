"""Fixtures for the benchmark tests: the repository and `tests/` (for the `pdfs` builders) on
sys.path, and an environment without the developer's FOLIO_* variables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
_ROOT = _TESTS.parent
for _path in (_TESTS, _ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FOLIO_* or platform tokens: the defaults of config/folio.toml apply."""
    for name in list(os.environ):
        if name.startswith(("FOLIO_", "DISCORD_", "SLACK_")):
            monkeypatch.delenv(name)
