"""Fixtures for the scale-out tests (issue 9): real servers on loopback.

This folder, `tests/` (the `pdfs` builders) and `tests/bot` (FakeEngine) go on sys.path, so test
modules import their server fixtures from sibling modules (`scale_*.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_TESTS = _HERE.parent
for _path in (_HERE, _TESTS / "bot", _TESTS, _TESTS.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
