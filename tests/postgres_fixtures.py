"""pytest fixtures for a real PostgreSQL + pgvector on loopback (see postgres_server.py): one
server per test session, a fresh database per test. Import them into a folder's conftest."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer, binaries
from prerequisites import missing


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = binaries()
    if bin_dir is None:
        missing("PostgreSQL with pgvector is missing: run scripts/setup (pip install pgserver)")
    # Not under pytest's tmp folder: that is private to root, and the server may run as nobody.
    folder = Path(tempfile.mkdtemp(prefix="folio-postgres-"))
    folder.chmod(0o755)
    server = PostgresServer(folder, bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server."""
    if postgres_server.process is None:  # a test that stopped it failed midway
        postgres_server.start()
    return postgres_server.create_database("t_" + uuid.uuid4().hex[:12])
