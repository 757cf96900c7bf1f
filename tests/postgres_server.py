"""A real PostgreSQL 16 with pgvector on loopback, for tests: the binaries of the `pgserver`
wheel (a dev dependency; Debian's PostgreSQL has no pgvector), run directly (initdb, then
postgres on 127.0.0.1 at a free port, its socket in the data folder). As root, the server runs
as `nobody` (PostgreSQL refuses root). fsync is off: the tests kill and restart it, they do not
test the disk.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def binaries() -> Path | None:
    """The folder of pgserver's PostgreSQL binaries, None if the wheel is not installed (the
    package itself is not imported: it sets up lock files of its own at import)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return folder if (folder / "postgres").exists() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One server: `start()`, `stop()` (fast shutdown), `kill()` (SIGKILL), `start()` again on
    the same folder and port."""

    def __init__(self, folder: Path, bin_dir: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user = "nobody" if os.geteuid() == 0 else None
        folder.mkdir(parents=True, exist_ok=True)
        self._own(folder)
        if self._user is not None:
            # nobody may not reach the checkout (a folder under /root, say): a copy of the
            # installation beside the data (PostgreSQL finds lib/ and share/ relative to it).
            # The wheel's binaries find their libraries at $ORIGIN/../../../pgserver.libs.
            installed = bin_dir.parent  # .../site-packages/pgserver/pginstall
            copy = folder / "pg" / "pgserver" / "pginstall"
            shutil.copytree(installed, copy, symlinks=True)
            libs = installed.parent.parent / "pgserver.libs"
            if libs.is_dir():
                shutil.copytree(libs, folder / "pg" / "pgserver.libs", symlinks=True)
            for path in (folder / "pg", folder / "pg" / "pgserver"):
                path.chmod(0o755)
            bin_dir = copy / "bin"
        self.bin = bin_dir
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")

    def _own(self, path: Path) -> None:
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([str(self.bin / program), *args], check=True, capture_output=True,
                       user=self._user, timeout=120)

    def url(self, database: str = "folio") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> None:
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
             "-p", str(self.port), "-k", str(self.folder), "-c", "fsync=off",
             "-c", "max_connections=100", "-c", "shared_buffers=64MB"],
            stdout=log, stderr=subprocess.STDOUT, user=self._user,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "postgres exited: " + (self.folder / "server.log").read_text()[-2000:]
                )
            if self._accepts():
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start within {timeout:.0f}s")

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2, autocommit=True) as db:
                db.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
