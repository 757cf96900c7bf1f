"""A real redis-server on loopback for the shared-queue tests, and queues on it.

The server (Debian's redis-server, installed by `scripts/setup --with-test-services`) runs per
test module on a free port of 127.0.0.1 with no persistence, and is killed at the end. If the
binary is missing the tests skip with the reason, except under CI (the environment variable CI
set), where a missing server is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.migrations import BotDatabase
from bot.redis_queue import RedisJobQueue, RedisQueueConfig

REDIS_SERVER = "redis-server"


@dataclass(frozen=True)
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def find_redis_server() -> str:
    found = shutil.which(REDIS_SERVER) or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    if found is None:
        reason = (
            "redis-server is not installed: run scripts/setup --with-test-services "
            "(apt-get install redis-server)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    """Start on `port`, or on a free port (a port taken in between gets another try)."""
    binary = find_redis_server()
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        chosen = port or _free_port()
        process = subprocess.Popen(
            [
                binary, "--port", str(chosen), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning",
                "--protected-mode", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if _answers_ping(chosen):
                return RedisServer(f"redis://127.0.0.1:{chosen}/0", chosen, process)
            time.sleep(0.05)
        stop_redis(process)
    raise RuntimeError("redis-server did not start on loopback")


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the module (each test uses its own key prefix)."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        stop_redis(server.process)


@pytest.fixture
def redis_config(redis_server: RedisServer) -> RedisQueueConfig:
    """A fresh namespace on the shared server, with a short claim timeout."""
    return RedisQueueConfig(
        url=redis_server.url, prefix=f"t{uuid.uuid4().hex[:10]}", claim_timeout_s=1.0,
        delivery_lease_s=1.0,
    )


MakeQueue = Callable[..., Awaitable[RedisJobQueue]]


@pytest.fixture
async def make_queue(
    redis_config: RedisQueueConfig, tmp_path: Path
) -> AsyncIterator[MakeQueue]:
    """`await make_queue(name, **options)`: a queue playing one process (its own SQLite file),
    sharing `redis_config`'s namespace with the other queues of the test; closed at teardown."""
    opened: list[tuple[RedisJobQueue, BotDatabase]] = []

    async def make(name: str = "a", **options: Any) -> RedisJobQueue:
        config = options.pop("config", redis_config)
        db = await BotDatabase.open(tmp_path / f"{name}.sqlite")
        options.setdefault("max_pending", 100)
        options.setdefault("max_pending_per_user", 100)
        queue = await RedisJobQueue.connect(db, config, **options)
        opened.append((queue, db))
        return queue

    yield make
    for queue, db in opened:
        await queue.close()
        await db.close()
