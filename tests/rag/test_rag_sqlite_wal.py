"""Opening a new data folder from several processes at once: nobody gets "database is locked".

CI caught two `folio ingest` processes on one new data folder, one of which failed at
`PRAGMA journal_mode=WAL`: SQLite refuses that switch at once, without the busy timeout, while
another connection is making the same switch.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import pytest

from rag.sqlite_wal import enter_wal_mode

OPENERS = 4
TRIALS = 30  # before the fix, several of 30 trials failed for either file


def _held_exclusive(path: Path, for_s: float) -> threading.Thread:
    """Another connection holding the file's exclusive lock for `for_s` seconds."""
    locked = threading.Event()

    def hold() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(for_s)
        db.execute("COMMIT")
        db.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(5)
    return holder


def test_the_switch_waits_for_another_connection_s_lock(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    holder = _held_exclusive(path, for_s=0.4)
    db = sqlite3.connect(path, timeout=0, isolation_level=None)  # no busy handler at all
    started = time.monotonic()
    assert enter_wal_mode(db, within_s=5) == "wal"
    assert time.monotonic() - started >= 0.2  # it did wait for the holder
    holder.join()
    db.close()


def test_the_switch_gives_up_at_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    holder = _held_exclusive(path, for_s=1.5)
    db = sqlite3.connect(path, timeout=0, isolation_level=None)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enter_wal_mode(db, within_s=0.3)
    assert time.monotonic() - started < 1.2
    holder.join()
    db.close()


def test_an_error_that_is_not_a_lock_is_not_retried(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite")
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        enter_wal_mode(db, within_s=5)


def _wait_until(moment: float) -> None:
    """Spin to a shared wall-clock moment: a far closer start than a barrier's wake-ups."""
    while time.time() < moment:
        pass


def _open_store(path: str, start_at: float) -> str | None:
    from rag.store import DocumentStore

    _wait_until(start_at)
    try:
        DocumentStore(Path(path)).close()
    except Exception as exc:  # reported to the parent, which asserts there is none
        return repr(exc)
    return None


def _open_bot_database(path: str, start_at: float) -> str | None:
    from bot.migrations import BotDatabase

    async def open_and_close() -> None:
        await (await BotDatabase.open(path)).close()

    _wait_until(start_at)
    try:
        asyncio.run(open_and_close())
    except Exception as exc:
        return repr(exc)
    return None


@pytest.fixture(scope="module")
def openers() -> Iterator[Pool]:
    with multiprocessing.get_context("spawn").Pool(OPENERS) as pool:
        pool.starmap(_wait_until, [(0.0,)] * OPENERS)  # every worker started before timing
        yield pool


@pytest.mark.parametrize("opener", [_open_store, _open_bot_database], ids=["documents", "bot"])
def test_processes_opening_one_new_file_at_once_all_succeed(
    tmp_path: Path, openers: Pool, opener: Any
) -> None:
    failures = []
    for trial in range(TRIALS):
        path = tmp_path / f"trial-{trial}" / "data.sqlite"
        start_at = time.time() + 0.15
        results = openers.starmap(opener, [(str(path), start_at)] * OPENERS, chunksize=1)
        failures += [error for error in results if error]
        assert path.exists()
    assert failures == []
