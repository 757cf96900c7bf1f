"""Local text generation behind a small interface; llama-cpp-python is imported only here.

The generator renders chat messages with the GGUF's own chat template, counts tokens with the
model's tokenizer (the prompt builder needs exact counts to fit the context window), and streams
tokens greedily. Only the worker thread calls it: a llama.cpp context is not thread-safe.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict

from config.errors import ConfigError
from rag.cpu import quiet_openmp_threads
from rag.errors import GenerationCancelled
from rag.model_copy import Weights, model_file
from rag.models import installed_cache_dir

logger = logging.getLogger(__name__)


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class GenerationResult:
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None  # seconds from the call to the first generated token
    seconds: float


class Generator(Protocol):
    """A chat model that can count tokens and stream a completion."""

    @property
    def name(self) -> str: ...

    @property
    def context_tokens(self) -> int: ...

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The exact prompt text the model will see for these messages."""
        ...

    def count_tokens(self, text: str) -> int: ...

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
        """Greedy completion of `prompt`. `on_text` gets the whole text so far after each token;
        `stop_when(text)` can end generation early (e.g. on repetition); raises
        GenerationCancelled when `cancelled()` turns true. `messages` are what `prompt` was
        rendered from: a server back end sends them and lets the server apply its template."""
        ...


def gguf_chat_formatter(
    llm: Any, model_path: Path
) -> Callable[[Sequence[ChatMessage]], str]:
    """The chat template stored in a loaded GGUF (`llm` is a llama_cpp.Llama): messages in, the
    exact prompt text the model was trained on out."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    metadata: dict[str, str] = llm.metadata
    template = metadata.get("tokenizer.chat_template")
    if not template:
        raise ConfigError(f"The model {model_path} has no chat template in its GGUF metadata.")

    def token_text(token: int) -> str:
        if token < 0:
            return ""
        return bytes(llm.detokenize([token], special=True)).decode("utf-8", errors="ignore")

    eos, bos = token_text(llm.token_eos()), token_text(llm.token_bos())
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def render(messages: Sequence[ChatMessage]) -> str:
        formatted: Any = formatter(messages=list(messages))  # type: ignore[arg-type]
        return str(formatted.prompt)

    return render


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def extra_buffer_types(enabled: bool) -> Iterator[None]:
    """Load llama.cpp models inside this block with or without its extra weight buffer types.

    The extra buffer types are where llama.cpp repacks weights for a CPU's special kernels, AMX
    among them. On Intel Xeons with AMX, Q4_0/Q4_1/Q8_0 weights go to the AMX buffer, whose
    matrix multiply gives wrong results for Q4 and segfaults (llama.cpp PR #16315, issue #20824),
    so Folio loads with them off unless `generator.extra_buffer_types` turns them on.
    llama-cpp-python builds its model parameters from `llama_model_default_params()` inside
    `Llama.__init__` and offers no argument for this field, so the defaults are wrapped for the
    duration of the load; tests read the loaded model's parameters back to prove it took effect.
    """
    from llama_cpp import llama_cpp as native

    defaults, chosen = _defaults_with_extra_buffers(enabled)
    with _PARAMS_LOCK:
        native.llama_model_default_params = chosen
        try:
            yield
        finally:
            native.llama_model_default_params = defaults


def disable_extra_buffer_types_for_process() -> None:
    """For a process that only serves a model (llama_cpp.server): every load, no extra buffers."""
    from llama_cpp import llama_cpp as native

    native.llama_model_default_params = _defaults_with_extra_buffers(False)[1]


def _defaults_with_extra_buffers(enabled: bool) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """llama-cpp-python's model defaults, and the same defaults with `use_extra_bufts` set."""
    from llama_cpp import llama_cpp as native

    defaults: Callable[[], Any] = native.llama_model_default_params
    if not hasattr(defaults(), "use_extra_bufts"):
        raise ConfigError(
            "This llama-cpp-python has no use_extra_bufts model parameter, so Folio cannot keep "
            "weights out of the AMX buffer; install llama-cpp-python 0.3.16 or newer."
        )

    def chosen() -> Any:
        params = defaults()
        params.use_extra_bufts = enabled
        return params

    return defaults, chosen


class LlamaCppGenerator:
    """Any GGUF chat model through llama-cpp-python, loaded once."""

    def __init__(
        self,
        model_path: Path,
        *,
        context_tokens: int,
        threads: int,
        batch_tokens: int,
        temperature: float,
        repeat_penalty: float,
        extra_buffers: bool = False,
        verbose: bool = False,
        weights: Weights = "as-is",
        cache_dir: Path | None = None,
    ) -> None:
        # Before llama.cpp (and its OpenMP runtime) loads: in the model's own process nothing else
        # has set this, and spinning threads cost most of the decode rate on shared cores.
        quiet_openmp_threads()
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ConfigError(
                "llama-cpp-python is not installed: run scripts/setup (pip install llama-cpp-python)."
            ) from exc
        if not model_path.is_file():
            raise ConfigError(
                f"The generation model {model_path} does not exist: set generator.model_path to a "
                "GGUF file, or leave it empty for the embedded SmolLM2."
            )
        # In the model's own process: the quantizer is native code too.
        loaded = model_file(model_path, weights, cache_dir or installed_cache_dir())
        try:
            with extra_buffer_types(extra_buffers):
                self._llm: Any = Llama(
                    model_path=str(loaded),
                    n_ctx=context_tokens,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_batch=min(batch_tokens, context_tokens),
                    verbose=verbose,
                )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"The generation model {model_path} could not be loaded ({exc}); is it a valid GGUF?"
            ) from exc
        self._formatter = gguf_chat_formatter(self._llm, model_path)
        self._name = model_path.name
        self.loaded_file = loaded
        self._temperature = temperature
        self._repeat_penalty = repeat_penalty
        self._is_eog = self._end_of_generation_check()

    def _end_of_generation_check(self) -> Callable[[int], bool]:
        import llama_cpp

        vocab = getattr(self._llm._model, "vocab", None)
        if vocab is not None and hasattr(llama_cpp, "llama_vocab_is_eog"):
            return lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        eos = self._llm.token_eos()
        return lambda token: token == eos

    @property
    def name(self) -> str:
        return self._name

    @property
    def context_tokens(self) -> int:
        return int(self._llm.n_ctx())

    @property
    def uses_extra_buffers(self) -> bool:
        """What the loaded model's parameters say (read back, not what was asked for)."""
        return bool(self._llm.model_params.use_extra_bufts)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        return self._formatter(messages)

    def _tokenize(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def warm_up(self) -> None:
        """Run one tiny generation so the first user does not pay for lazy initialisation."""
        self.generate(self.render([{"role": "user", "content": "Hi"}]), max_tokens=1)

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        stop_when: Callable[[str], bool] | None = None,
        messages: Sequence[ChatMessage] = (),  # the model sees `prompt`, rendered from them
    ) -> GenerationResult:
        started = time.perf_counter()
        tokens = self._tokenize(prompt)
        room = self.context_tokens - len(tokens)
        if room <= 0:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit the context")
        max_tokens = min(max_tokens, room)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        text = ""
        generated = 0
        first_token_s: float | None = None
        finish: Literal["stop", "length"] = "length"
        # reset=True lets llama-cpp-python reuse the KV cache for the longest common prefix with
        # the previous prompt, so the fixed system prompt is evaluated once.
        for token in self._llm.generate(
            tokens,
            temp=self._temperature,
            top_k=1 if self._temperature == 0 else 40,
            repeat_penalty=self._repeat_penalty,
            reset=True,
        ):
            if first_token_s is None:
                first_token_s = time.perf_counter() - started
            if cancelled is not None and cancelled():
                raise GenerationCancelled()
            if self._is_eog(token):
                finish = "stop"
                break
            generated += 1
            piece = decoder.decode(bytes(self._llm.detokenize([token])))
            if piece:
                text += piece
                if on_text is not None:
                    on_text(text)
                if stop_when is not None and stop_when(text):
                    finish = "stop"
                    break
            if generated >= max_tokens:
                break
        text += decoder.decode(b"", final=True)
        return GenerationResult(
            text=text,
            finish_reason=finish,
            prompt_tokens=len(tokens),
            completion_tokens=generated,
            first_token_s=first_token_s,
            seconds=time.perf_counter() - started,
        )
