"""A scripted `Generator` for tests, importable in a model child process (tests/ on sys.path).

`ScriptedGenerator` is an honest stand-in for a small chat model: it renders messages as plain
text, counts words as tokens, and streams a fixed reply word by word (with a delay, so a test can
cancel mid-answer). When the prompt contains its `crash_word`, it kills its own process with a
real signal, as a segfaulting llama.cpp kernel would: no exception, no cleanup.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence

from rag.generate import ChatMessage, GenerationResult


class ScriptedGenerator:
    def __init__(
        self,
        reply: str = "I don't know.",
        *,
        crash_word: str = "",
        crash_signal: int = signal.SIGSEGV,
        word_delay_s: float = 0.0,
        context_tokens: int = 2048,
    ) -> None:
        self._reply = reply
        self._crash_word = crash_word.lower()
        self._crash_signal = crash_signal
        self._delay = word_delay_s
        self._context = context_tokens

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def context_tokens(self) -> int:
        return self._context

    def render(self, messages: Sequence[ChatMessage]) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

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
        started = time.perf_counter()
        if self._crash_word and self._crash_word in prompt.lower():
            os.kill(os.getpid(), self._crash_signal)
            time.sleep(5)  # a signal that is not fatal at once still never returns an answer
        text, count, finish = "", 0, "stop"
        for word in self._reply.split():
            if count >= max_tokens:
                finish = "length"
                break
            time.sleep(self._delay)
            text = f"{text} {word}".strip()
            count += 1
            if on_text is not None:
                on_text(text)
            if stop_when is not None and stop_when(text):
                break
        return GenerationResult(
            text=text, finish_reason=finish,  # type: ignore[arg-type]
            prompt_tokens=self.count_tokens(prompt), completion_tokens=count,
            first_token_s=self._delay, seconds=time.perf_counter() - started,
        )
