"""Shared by the tests that run `folio` in-process: `bot.cli` replaces the root logger's handlers
(its log file and a quiet stderr), so a test puts pytest's handlers back afterwards."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def restored_root_logger() -> Iterator[None]:
    """Put the root logger's handlers and level back, closing the ones `folio` added."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
