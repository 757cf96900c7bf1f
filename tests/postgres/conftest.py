"""Fixtures for the Postgres back end's tests: a real server on loopback. tests/ and the folders
with the fakes and servers the tests reuse (fake Slack, Redis, HashEmbedder) go on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
_FOLDERS = ("rag", "scale", "bot", "reliability", "adapters/slack")
for _path in (_TESTS, _TESTS.parent, *(_TESTS / f for f in _FOLDERS)):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from postgres_fixtures import postgres_server, postgres_url  # noqa: E402

__all__ = ["postgres_server", "postgres_url"]
