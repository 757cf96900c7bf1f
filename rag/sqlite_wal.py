"""Put a SQLite file into WAL mode even when other processes open it at the same moment.

Two processes that open a new data folder at once (the running bot and `folio ingest`, or two
ingests) both ask for `PRAGMA journal_mode=WAL`. The switch needs an exclusive lock, and SQLite
answers "database is locked" at once instead of calling the busy handler when two connections
would otherwise deadlock on it. So the busy timeout alone does not help here: the switch is
retried, with a short growing pause, until its own deadline.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def enter_wal_mode(db: sqlite3.Connection, *, within_s: float = 10.0) -> str:
    """Switch `db`'s file to WAL mode, retrying while another connection holds the lock.

    Returns the journal mode SQLite reports (``"wal"``, or ``"memory"`` for an in-memory
    database). Raises the last `sqlite3.OperationalError` once `within_s` has passed.
    """
    deadline = time.monotonic() + within_s
    pause = 0.005
    while True:
        try:
            row = db.execute("PRAGMA journal_mode=WAL").fetchone()
            return str(row[0]).lower() if row else ""
        except sqlite3.OperationalError as exc:
            if not _is_lock_error(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def prepare_wal_file(path: Path, *, within_s: float = 10.0) -> None:
    """Create the file if needed and leave it in WAL mode (the mode is stored in the file, so
    a connection opened afterwards, e.g. by aiosqlite, finds it already set)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=within_s, isolation_level=None)
    try:
        enter_wal_mode(db, within_s=within_s)
    finally:
        db.close()


__all__ = ["enter_wal_mode", "prepare_wal_file"]
