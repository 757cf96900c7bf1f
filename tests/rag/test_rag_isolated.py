"""The model child process: answers stream through it, and a native crash in it is a one-line
error for that call, never the caller's death; the next call gets a fresh process."""

from __future__ import annotations

import functools
import itertools
import os
import signal
import threading
import time

import pytest
from scripted_generator import ScriptedGenerator

from rag.errors import GenerationCancelled, GeneratorCrashed
from rag.generate_isolated import IsolatedGenerator

REPLY = "The ferry leaves every ninety minutes from Pier 7 and the crossing takes forty minutes."


def isolated(**options: object) -> IsolatedGenerator:
    return IsolatedGenerator(functools.partial(ScriptedGenerator, REPLY, **options))


def test_streams_the_child_generators_text_and_counts_its_tokens() -> None:
    generator = isolated()
    try:
        seen: list[str] = []
        prompt = generator.render([{"role": "user", "content": "When does the ferry leave?"}])
        result = generator.generate(prompt, max_tokens=100, on_text=seen.append)
        assert result.text == REPLY
        assert seen[-1] == REPLY and len(seen) == len(REPLY.split())  # one update per token
        assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
        assert generator.count_tokens("three small words") == 3
        assert generator.name == "scripted" and generator.context_tokens == 2048
        assert generator.pid is not None and generator.pid != os.getpid()
    finally:
        generator.close()
    assert generator.pid is None


def test_a_segfault_in_the_child_raises_and_the_next_call_starts_a_new_process() -> None:
    generator = isolated(crash_word="volcano")
    try:
        generator.warm_up()
        first_pid = generator.pid
        with pytest.raises(GeneratorCrashed) as crash:
            generator.generate("tell me about the volcano", max_tokens=50)
        assert "SIGSEGV" in crash.value.message and "folio doctor" in crash.value.message
        assert generator.pid is None  # the dead child is gone, not a zombie we keep
        result = generator.generate("tell me about the ferry", max_tokens=50)
        assert result.text == REPLY
        assert generator.pid not in (None, first_pid)
        assert generator.starts == 2
    finally:
        generator.close()


def test_a_child_killed_from_outside_mid_answer_is_reported_with_its_signal() -> None:
    generator = isolated(word_delay_s=0.05)
    try:
        generator.warm_up()
        pid = generator.pid
        assert pid is not None
        threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)).start()
        with pytest.raises(GeneratorCrashed, match="SIGKILL"):
            generator.generate("question", max_tokens=100, on_text=lambda _t: None)
    finally:
        generator.close()


def test_cancel_and_stop_when_end_generation_at_the_next_token() -> None:
    generator = isolated(word_delay_s=0.02)
    try:
        seen: list[str] = []
        with pytest.raises(GenerationCancelled):
            generator.generate("q", max_tokens=100, on_text=seen.append,
                               cancelled=lambda: len(seen) >= 3)
        assert 3 <= len(seen) < len(REPLY.split())
        stopped = generator.generate("q", max_tokens=100,
                                     stop_when=lambda text: text.endswith("minutes"))
        assert stopped.text == "The ferry leaves every ninety minutes"
        assert stopped.finish_reason == "stop"
        # The child is ready for the next request at once (no stale "stop" left in the pipe).
        assert generator.generate("q", max_tokens=100).text == REPLY
    finally:
        generator.close()


def test_an_error_while_loading_comes_back_as_that_error() -> None:
    generator = IsolatedGenerator(functools.partial(_refuse_to_load, "no such model: x.gguf"))
    with pytest.raises(RuntimeError, match=r"no such model: x\.gguf"):
        generator.warm_up()
    assert generator.pid is None


def test_a_child_that_hangs_is_killed_after_the_timeout() -> None:
    generator = IsolatedGenerator(
        functools.partial(ScriptedGenerator, REPLY, crash_word="hang", crash_signal=signal.SIGSTOP),
        start_timeout_s=1.5,
    )
    try:
        generator.warm_up()
        started = time.monotonic()
        with pytest.raises(GeneratorCrashed, match="no answer in 2s"):
            generator.generate("hang now", max_tokens=10)
        assert time.monotonic() - started < 10
        assert generator.generate("fine", max_tokens=100).text == REPLY
    finally:
        generator.close()


def _refuse_to_load(message: str) -> ScriptedGenerator:
    raise RuntimeError(message)
