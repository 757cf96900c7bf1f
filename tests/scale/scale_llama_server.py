"""Real servers on loopback for the generation-server tests.

`LlamaServer` runs llama-cpp-python's own OpenAI-compatible server through Folio's wrapper
(`python -m rag.llama_server`, which keeps weights out of the AMX buffer that crashes it)
with the embedded SmolLM2 model on a free port, waits (bounded) until it answers, and can be
killed mid-answer. `SilentServer` accepts connections and never answers (read timeouts).
`StreamingStub` is a tiny OpenAI-compatible chat server that streams a fixed answer slowly and
really serves requests in parallel (llama-cpp-python's server runs one request at a time), so a
test can see whether the worker pool overlaps generations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pdfs
import pytest

from bot.app import load_settings
from config.settings import Settings
from rag.engine import RagEngine
from rag.factory import build_engine
from rag.models import default_generation_model

READY_TIMEOUT_S = 90.0
CONTEXT_TOKENS = 2048  # the server's n_ctx = our generator.context_tokens
ANSWER_TOKENS = 48  # short answers keep the module quick on two busy cores

GUIDE = [
    "Harbor Lights Ferry Company operates passenger boats across the bay. The company was "
    "founded by sailors who wanted a reliable crossing for the island villages.",
    "The ferry to Marrow Island departs every ninety minutes from Pier 7. A single adult ticket "
    "costs 14 euros and children under twelve travel free. The crossing takes forty minutes in "
    "calm weather.",
    "Lost property is kept at the harbour office for thirty days. Passengers can collect items "
    "between nine and five on weekdays.",
]
QUESTION = "How often does the ferry to Marrow Island depart?"
SECOND_QUESTION = "How long is lost property kept at the harbour office?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """`python -m rag.llama_server` with the embedded model, on 127.0.0.1 only."""

    def __init__(
        self, log_path: Path, *, threads: int = 1, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._log_path = log_path
        self._threads = threads
        self._extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LlamaServer:
        command = [
            sys.executable, "-m", "rag.llama_server",
            "--model", str(default_generation_model()),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(CONTEXT_TOKENS), "--n_threads", str(self._threads),
            # Its default cuts a streaming answer short when another request arrives.
            "--interrupt_requests", "False",
            *self._extra_args,
        ]
        log = self._log_path.open("ab")
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama_cpp.server not ready in {READY_TIMEOUT_S}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self._log_path.read_text(errors="replace")[-2000:]

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed or unplugged machine would."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(10)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def running_llama_server(folder: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(folder / "llama-server.log").start()
    try:
        yield server
    finally:
        server.stop()


class SilentServer:
    """Accepts TCP connections on loopback and never sends a byte."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = int(self._socket.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.accepted = 0
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._connections.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for connection in self._connections:
            connection.close()
        self._socket.close()


@dataclass
class StubRequest:
    started: float
    ended: float | None = None


@dataclass
class StreamingStub:
    """An OpenAI-compatible chat server (aiohttp, own thread and loop) that streams `answer`
    word by word, `delay_s` apart, serving any number of requests at once."""

    answer: str
    delay_s: float = 0.05
    port: int = 0
    requests: list[StubRequest] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StreamingStub:
        from aiohttp import web

        ready = threading.Event()
        self.port = free_port()

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": "stub-model"}]})

        async def chat(request: web.Request) -> web.StreamResponse:
            record = StubRequest(time.monotonic())
            self.requests.append(record)
            await request.json()
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            words = self.answer.split(" ")
            for number, word in enumerate(words):
                await asyncio.sleep(self.delay_s)
                piece = word if number == 0 else " " + word
                await response.write(_sse(_chunk(piece, None)))
            await response.write(_sse(_chunk("", "stop")))
            await response.write(b"data: [DONE]\n\n")
            record.ended = time.monotonic()
            return response

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/v1/models", models)
            app.router.add_post("/v1/chat/completions", chat)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            ready.set()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(serve())
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the streaming stub did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def max_in_flight(self) -> int:
        """The most requests that were being answered at one moment."""
        events = sorted(
            [(r.started, 1) for r in self.requests]
            + [(r.ended if r.ended is not None else float("inf"), -1) for r in self.requests]
        )
        most = current = 0
        for _, change in events:
            current += change
            most = max(most, current)
        return most


def _chunk(content: str, finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
        "model": "stub-model",
        "choices": [{"index": 0, "delta": {"content": content} if content else {},
                     "finish_reason": finish}],
    }


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


# --- settings and engines ------------------------------------------------------------------


_SETTINGS_ENV = ("FOLIO_", "DISCORD_BOT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
                 "SLACK_SIGNING_SECRET")


def server_settings(data_dir: Path, base_url: str, **generator: Any) -> Settings:
    """Settings for the "openai" back end at `base_url`, ignoring the developer's FOLIO_*."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith(_SETTINGS_ENV):
                monkeypatch.delenv(name)
        options = {
            "backend": "openai", "base_url": base_url, "context_tokens": CONTEXT_TOKENS,
            "max_answer_tokens": ANSWER_TOKENS, "connect_timeout_s": 2.0,
            "read_timeout_s": 20.0, "retries": 0, "answer_mode": "hybrid", **generator,
        }
        return load_settings(data_dir=data_dir, generator=options)


def guide_engine(settings: Settings, collection: str = "guide") -> RagEngine:
    """An engine on `settings` with the ferry guide ingested into `collection`."""
    engine = build_engine(settings)
    path = settings.data_dir / "guide.pdf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pdfs.make_pdf(GUIDE, title="Harbor"))
    report = engine.ingest_paths([path], collection=collection)
    assert report.outcomes[0].status == "added", report.outcomes
    return engine
