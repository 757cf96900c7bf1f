"""The local model in a child process, so a native crash costs one answer, not the bot.

llama.cpp is C++: a bad kernel (the AMX path on some Xeons), a broken build or a corrupt GGUF
can segfault. In-process, that kills the platform connections, the queue and the event loop with
it, and the job that triggered it is replayed at the next start. `IsolatedGenerator` implements
the same `Generator` interface by forwarding every call over a pipe to a child process that owns
the real generator. If the child dies, the call raises `GeneratorCrashed` naming the signal, and
the next call starts a fresh child. Text streams back token by token (as increments, so a long
answer costs no more than its own bytes), and a stop flag shared with the child ends generation
at the next token when the caller cancels or `stop_when` fires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from rag.errors import GenerationCancelled, GeneratorCrashed
from rag.generate import ChatMessage, GenerationResult, Generator

logger = logging.getLogger(__name__)

GeneratorFactory = Callable[[], Generator]
"""Builds the real generator inside the child: must be picklable by reference (a top-level
callable, or a functools.partial of one), since the child is a fresh interpreter."""

START_TIMEOUT_S = 300.0  # loading a large GGUF from a cold disk can take minutes


def _serve(connection: Connection) -> None:
    """The child's loop: build the generator, then answer one request at a time."""
    sys.path[:] = connection.recv()  # the parent's, so the factory's module imports here too
    try:
        factory: GeneratorFactory = connection.recv()
        generator = factory()
    except BaseException as exc:  # reported, then the child ends
        connection.send(("error", _portable(exc)))
        return
    connection.send(("ready", (generator.name, generator.context_tokens)))
    while True:
        try:
            method, args = connection.recv()
        except EOFError:  # the parent went away
            return
        try:
            connection.send(("ok", _handle(generator, connection, method, args)))
        except BaseException as exc:
            connection.send(("error", _portable(exc)))


def _handle(generator: Generator, connection: Connection, method: str, args: Any) -> Any:
    if method == "render":
        return generator.render(args)
    if method == "count_tokens":
        return generator.count_tokens(args)
    if method == "warm_up":
        warm = getattr(generator, "warm_up", None)
        if callable(warm):
            warm()
        return None
    if method == "info":
        return {
            "name": generator.name,
            "context_tokens": generator.context_tokens,
            "extra_buffers": getattr(generator, "uses_extra_buffers", None),
            "pid": os.getpid(),
            # How llama.cpp's OpenMP threads wait (set before it loaded; see rag.cpu).
            "openmp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "openmp_spin_count": os.environ.get("GOMP_SPINCOUNT"),
        }
    if method == "generate":
        prompt, max_tokens = args
        sent = 0

        def forward(text: str) -> None:
            nonlocal sent
            if len(text) > sent:
                connection.send(("text", text[sent:]))
                sent = len(text)

        def stop_requested(_text: str) -> bool:
            # The parent's only message during a generation is "stop" (cancel or stop_when).
            return connection.poll() and connection.recv()[0] == "stop"

        return generator.generate(
            prompt, max_tokens=max_tokens, on_text=forward, stop_when=stop_requested
        )
    raise ValueError(f"unknown request {method!r}")


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def describe_exit(exitcode: int | None) -> str:
    """'killed by SIGSEGV' for a signal (a negative exit code), 'exited with code 3' otherwise."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class IsolatedGenerator:
    """A `Generator` whose model lives in a supervised child process, restarted after a crash.

    Calls are serialised (one child, one request at a time), like the in-process generator's
    single engine thread. `name` and `context_tokens` are known once the child has started.
    """

    def __init__(self, factory: GeneratorFactory, *, start_timeout_s: float = START_TIMEOUT_S
                 ) -> None:
        self._factory = factory
        self._start_timeout_s = start_timeout_s
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._name = "(not started)"
        self._context_tokens = 0
        self.starts = 0  # model processes started; every one after the first replaced a dead one

    # --- the child -----------------------------------------------------------------------------

    def _ensure_child(self) -> Connection:
        if self._connection is not None and self._process is not None \
                and self._process.poll() is None:
            return self._connection
        if self._process is not None:
            self._discard_child()
        ours, theirs = socket.socketpair()
        process = subprocess.Popen(
            [sys.executable, "-m", "rag.generate_isolated", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.starts += 1
        connection = Connection(ours.detach())
        self._process, self._connection = process, connection
        try:
            connection.send(list(sys.path))
            connection.send(self._factory)
        except OSError:
            pass  # it died at once; _receive says how
        kind, value = self._receive(self._start_timeout_s, starting=True)
        if kind == "error":
            self._discard_child()
            raise value
        self._name, self._context_tokens = value
        logger.info("model process %s started (%s)", process.pid, self._name)
        return connection

    def _discard_child(self) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            connection.close()
        if process is not None:
            if process.poll() is None:
                process.kill()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                logger.warning("model process %s did not exit after SIGKILL", process.pid)

    def _receive(self, timeout_s: float, *, starting: bool = False) -> tuple[str, Any]:
        """The child's next message; GeneratorCrashed if it dies (or is silent past timeout_s)."""
        connection, process = self._connection, self._process
        assert connection is not None and process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if connection.poll(max(0.0, min(0.5, deadline - time.monotonic()))):
                    message: tuple[str, Any] = connection.recv()
                    return message
            except (EOFError, OSError):
                pass  # the child closed its end: it is dying; see how below
            else:
                if process.poll() is None and time.monotonic() < deadline:
                    continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=2)
            exitcode = process.poll()
            reason = describe_exit(exitcode) if exitcode is not None else \
                f"no answer in {timeout_s:.0f}s"
            self._discard_child()
            logger.error("the model process %s %s", reason,
                         "while loading" if starting else "while answering")
            raise GeneratorCrashed(reason)

    def _call(self, method: str, args: Any = None) -> Any:
        with self._lock:
            connection = self._ensure_child()
            connection.send((method, args))
            kind, value = self._receive(self._start_timeout_s)
            if kind == "error":
                raise value
            return value

    def close(self) -> None:
        with self._lock:
            self._discard_child()

    @property
    def pid(self) -> int | None:
        """The child's process id, or None when none is running."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    # --- Generator -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        with self._lock:
            self._ensure_child()
            return self._name

    @property
    def context_tokens(self) -> int:
        with self._lock:
            self._ensure_child()
            return self._context_tokens

    def render(self, messages: Sequence[ChatMessage]) -> str:
        return str(self._call("render", list(messages)))

    def count_tokens(self, text: str) -> int:
        return int(self._call("count_tokens", text))

    def warm_up(self) -> None:
        self._call("warm_up")

    def info(self) -> dict[str, Any]:
        """What the child's generator reports about itself (name, window, extra buffers)."""
        return dict(self._call("info"))

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        stop_when: Callable[[str], bool] | None = None,
        messages: Sequence[ChatMessage] = (),
    ) -> GenerationResult:
        with self._lock:
            connection = self._ensure_child()
            connection.send(("generate", (prompt, max_tokens)))
            text = ""
            stopped_at: str | None = None  # the text when stop_when fired
            user_stopped = False
            while True:
                # Between tokens the child is never silent for long; the start timeout bounds
                # a prefill of a very long prompt on a slow machine.
                kind, value = self._receive(self._start_timeout_s)
                if kind == "text":
                    if user_stopped or stopped_at is not None:
                        continue  # tokens the child made before it saw the stop flag
                    text += value
                    if on_text is not None:
                        on_text(text)
                    if cancelled is not None and cancelled():
                        user_stopped = True
                        connection.send(("stop", None))
                    elif stop_when is not None and stop_when(text):
                        stopped_at = text
                        connection.send(("stop", None))
                    continue
                if kind == "error":
                    raise value
                result: GenerationResult = value
                if user_stopped or (cancelled is not None and cancelled()):
                    raise GenerationCancelled()
                if stopped_at is not None:
                    result = dataclasses.replace(result, text=stopped_at, finish_reason="stop")
                return result


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
