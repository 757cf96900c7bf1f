"""Generation on a server: any OpenAI-compatible chat completions API, streamed.

llama.cpp's server, vLLM and Ollama all speak it, so the model can run on another machine or a
GPU. The server applies its own chat template to the messages; this side only needs token counts
for the prompt budget, taken from (best first) the served model's GGUF read locally with its
vocabulary only, the server's tokenize endpoint, or an estimate with a margin.

A request streams on a helper thread that hands chunks over through a queue, so the calling
thread can notice a cancel within a tenth of a second even while the server is silent (still
reading a long prompt). Everything here is thread-safe: with `generator.concurrency` above 1,
several worker threads generate at once through one client (one HTTP connection pool).
Every way the server can fail us transiently (down, slow beyond the read timeout, dying
mid-answer, overloaded) raises GeneratorUnavailable, which the worker retries.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from config.errors import ConfigError, FolioError
from rag.errors import GenerationCancelled, GeneratorUnavailable
from rag.generate import ChatMessage, GenerationResult, gguf_chat_formatter

logger = logging.getLogger(__name__)

POLL_S = 0.1  # how often a waiting generation checks `cancelled()`
ESTIMATE_BYTES_PER_TOKEN = 3.0  # English BPE averages ~4 bytes a token: 3 leaves a margin
TEMPLATE_MARGIN_TOKENS = 48  # room left for a template we only approximate
COUNT_CACHE_SIZE = 4096
# Token counting endpoints, tried in order under the server's root (the base URL less /v1):
# llama-cpp-python's server, then llama.cpp's (and vLLM's) /tokenize.
_TOKENIZE_ENDPOINTS: tuple[tuple[str, Callable[[str, str], dict[str, Any]]], ...] = (
    ("/extras/tokenize", lambda text, model: {"input": text}),
    ("/tokenize", lambda text, model: {"content": text, "prompt": text, "model": model}),
)


def chatml(messages: Sequence[ChatMessage]) -> str:
    """An approximation of a server's chat template (ChatML), for counting tokens only."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


class _GgufTokenizer:
    """The served model's tokenizer and chat template, from its GGUF (vocabulary only, no
    weights: a few MB and milliseconds)."""

    def __init__(self, path: Path) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ConfigError(
                "generator.tokenizer_path needs llama-cpp-python: run scripts/setup, or leave "
                "tokenizer_path empty to count tokens with the server."
            ) from exc
        if not path.is_file():
            raise ConfigError(f"generator.tokenizer_path {path} does not exist.")
        try:
            self._llm: Any = Llama(model_path=str(path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"generator.tokenizer_path {path} is not a readable GGUF ({exc})."
            ) from exc
        self.render = gguf_chat_formatter(self._llm, path)
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        with self._lock:
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))


class OpenAICompatibleGenerator:
    """A `Generator` (rag/generate.py) backed by a chat completions server."""

    def __init__(
        self,
        base_url: str,
        *,
        model_name: str,
        api_key: str | None,
        context_tokens: int,
        connect_timeout_s: float,
        read_timeout_s: float,
        retries: int,
        temperature: float,
        repeat_penalty: float,
        tokenizer_path: Path | None = None,
    ) -> None:
        try:
            import openai
        except ImportError as exc:
            raise ConfigError(
                "The openai package is not installed: run scripts/setup (pip install openai)."
            ) from exc
        self._openai: Any = openai
        self.base_url = base_url.rstrip("/")
        self._root = self.base_url.removesuffix("/v1")
        self._api_key = api_key
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._client: Any = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or "none",  # the SDK insists on one; local servers ignore it
            timeout=openai.Timeout(read_timeout_s, connect=connect_timeout_s),
            max_retries=retries,
        )
        self._model = model_name
        self._context_tokens = context_tokens
        self._temperature = temperature
        self._repeat_penalty = repeat_penalty
        self._tokenizer = _GgufTokenizer(tokenizer_path) if tokenizer_path else None
        self._endpoint: str | None = None  # the tokenize endpoint that answered, or "" for none
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    # --- what the prompt builder needs -------------------------------------------------------

    @property
    def name(self) -> str:
        """The served model's file or model name; never raises (it labels answers and logs)."""
        try:
            model = self._model_name()
        except FolioError:
            return f"(model at {self.base_url})"
        return Path(model).name or model

    @property
    def context_tokens(self) -> int:
        """The window the prompt may fill: the server's, less a margin when the template and the
        counts are approximations."""
        if self._tokenizer is not None:
            return self._context_tokens
        return self._context_tokens - TEMPLATE_MARGIN_TOKENS

    def render(self, messages: Sequence[ChatMessage]) -> str:
        if self._tokenizer is not None:
            return self._tokenizer.render(messages)
        return chatml(messages)

    def count_tokens(self, text: str) -> int:
        with self._lock:
            cached = self._counts.get(text)
        if cached is not None:
            return cached
        count = self._count(text)
        with self._lock:
            if len(self._counts) >= COUNT_CACHE_SIZE:
                self._counts.clear()
            self._counts[text] = count
        return count

    def _count(self, text: str) -> int:
        if self._tokenizer is not None:
            return self._tokenizer.count(text)
        if self._endpoint is None:
            self._endpoint = self._find_tokenize_endpoint()
        if self._endpoint:
            tokens = self._tokenize_on_server(self._endpoint, text)
            if tokens is not None:
                return tokens
        return estimate_tokens(text)

    def _find_tokenize_endpoint(self) -> str:
        for path, _ in _TOKENIZE_ENDPOINTS:
            if self._tokenize_on_server(path, "Hello") is not None:
                logger.info("counting tokens with %s%s", self._root, path)
                return path
        logger.warning(
            "the server at %s has no tokenize endpoint: token counts are estimated "
            "(set generator.tokenizer_path to the model's GGUF for exact counts)", self._root
        )
        return ""

    def _tokenize_on_server(self, path: str, text: str) -> int | None:
        """The server's token count, None if it has no such endpoint; GeneratorUnavailable if
        it cannot be reached."""
        body = dict(_TOKENIZE_ENDPOINTS)[path](text, self._model_name())
        request = urllib.request.Request(
            self._root + path,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", **self._auth_header()},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._read_timeout) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise self._refused(exc.code) from None
            if exc.code >= 500 and exc.code != 501:
                raise GeneratorUnavailable(self.base_url, f"HTTP {exc.code}") from None
            return None  # 404, 405, 422: not this server's dialect
        except (urllib.error.URLError, OSError) as exc:
            raise GeneratorUnavailable(self.base_url, _reason(exc)) from None
        except ValueError:
            return None  # not JSON
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    def _auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _refused(self, status: int) -> ConfigError:
        return ConfigError(
            f"The generation server at {self.base_url} refused the API key (HTTP {status}): "
            "set FOLIO_GENERATOR_API_KEY."
        )

    def _model_name(self) -> str:
        """The configured model, else the first one the server lists (asked once)."""
        if self._model:
            return self._model
        try:
            models = self._client.models.list()
            first = next(iter(models.data), None)
        except Exception as exc:
            raise self._translate(exc) from None
        if first is None:
            raise ConfigError(f"The generation server at {self.base_url} serves no model.")
        self._model = str(first.id)
        return self._model

    def warm_up(self) -> None:
        """Check at start that the server answers (model name, token counting) without
        generating: a server that is down is named now rather than at the first question."""
        self._model_name()
        self.count_tokens(self.render([{"role": "user", "content": "Hi"}]))

    # --- generation --------------------------------------------------------------------------

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
        if not messages:
            raise ValueError("a chat completions server needs the messages, not only the prompt")
        started = time.perf_counter()
        prompt_tokens = self.count_tokens(prompt)
        room = self.context_tokens - prompt_tokens
        if room <= 0:
            raise ValueError(f"prompt of {prompt_tokens} tokens does not fit the context")
        request: dict[str, Any] = {
            "model": self._model_name(),
            "messages": [dict(m) for m in messages],
            "max_tokens": min(max_tokens, room),
            "temperature": self._temperature,
            "stream": True,
        }
        if self._repeat_penalty != 1.0:  # llama.cpp's name; servers that don't know it ignore it
            request["extra_body"] = {"repeat_penalty": self._repeat_penalty}
        stream = _Stream(self._client, request)
        text = ""
        chunks = 0
        usage_tokens: int | None = None
        first_token_s: float | None = None
        finish: str | None = None
        try:
            while True:
                kind, item = stream.next(POLL_S)
                if cancelled is not None and cancelled():
                    raise GenerationCancelled()
                if kind == "idle":
                    continue
                if kind == "error":
                    raise self._translate(item)
                if kind == "end":
                    break
                usage = getattr(item, "usage", None)
                if usage is not None and getattr(usage, "completion_tokens", None):
                    usage_tokens = int(usage.completion_tokens)
                choice = item.choices[0] if item.choices else None
                if choice is None:
                    continue
                if choice.finish_reason:
                    finish = str(choice.finish_reason)
                piece = choice.delta.content if choice.delta is not None else None
                if not piece:
                    continue
                if first_token_s is None:
                    first_token_s = time.perf_counter() - started
                chunks += 1
                text += piece
                if on_text is not None:
                    on_text(text)
                if stop_when is not None and stop_when(text):
                    finish = "stop"
                    break
        finally:
            stream.stop()
        if finish is None:
            # The stream ended without saying why: the server went away (or gave the slot to
            # another request) mid-answer. A partial answer is not an answer: retry it.
            raise GeneratorUnavailable(self.base_url, "the answer broke off")
        finish_reason: Literal["stop", "length"] = "length" if finish == "length" else "stop"
        return GenerationResult(
            text=text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=usage_tokens or chunks,
            first_token_s=first_token_s,
            seconds=time.perf_counter() - started,
        )

    def _translate(self, exc: BaseException) -> Exception:
        """An exception of the SDK or its HTTP library as one of ours."""
        openai = self._openai
        if isinstance(exc, FolioError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return GeneratorUnavailable(self.base_url, f"no reply within {self._read_timeout:g}s")
        if isinstance(exc, openai.APIConnectionError):
            return GeneratorUnavailable(self.base_url, _reason(exc.__cause__ or exc))
        if isinstance(exc, openai.APIStatusError):
            status = int(exc.status_code)
            if status in (401, 403):
                return self._refused(status)
            if status == 404:
                return ConfigError(
                    f"The generation server at {self.base_url} does not know the model "
                    f"{self._model!r} or the chat completions API (HTTP 404): check "
                    "generator.base_url and generator.model_name."
                )
            if status == 408 or status == 429 or status >= 500:
                return GeneratorUnavailable(self.base_url, f"HTTP {status}")
            return FolioError(
                f"The generation server at {self.base_url} rejected the request (HTTP {status})."
            )
        if isinstance(exc, OSError) or _is_transport_error(exc):
            # The HTTP library's own errors reach us unwrapped when a stream breaks mid-answer.
            return GeneratorUnavailable(self.base_url, "the connection broke off mid-answer")
        if isinstance(exc, Exception):
            return exc
        return RuntimeError(repr(exc))


class _Stream:
    """One streamed request on a daemon thread; chunks come back through a queue.

    `stop()` only sets a flag: the thread closes the response when the next chunk arrives (at
    once while the server streams), or when the read timeout ends a silent wait. Closing it from
    here instead would race with the read in progress.
    """

    def __init__(self, client: Any, request: dict[str, Any]) -> None:
        self._client = client
        self._request = request
        self._items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="folio-generate-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        response: Any = None
        try:
            response = self._client.chat.completions.create(**self._request)
            for chunk in response:
                if self._stopped.is_set():
                    break
                self._items.put(("chunk", chunk))
            self._items.put(("end", None))
        except BaseException as exc:  # handed to the caller, which raises it
            self._items.put(("error", exc))
        finally:
            if response is not None:
                try:
                    response.close()
                except Exception:  # the connection is gone anyway
                    logger.debug("closing a stream failed", exc_info=True)

    def next(self, timeout_s: float) -> tuple[str, Any]:
        """("chunk", chunk), ("end", None), ("error", exception) or ("idle", None)."""
        try:
            return self._items.get(timeout=timeout_s)
        except queue.Empty:
            return ("idle", None)

    def stop(self) -> None:
        self._stopped.set()


def estimate_tokens(text: str) -> int:
    """A safe overestimate when no tokenizer is available: bytes / 3, plus one."""
    return math.ceil(len(text.encode("utf-8")) / ESTIMATE_BYTES_PER_TOKEN) + 1


def _is_transport_error(exc: BaseException) -> bool:
    """An httpx (or httpcore) error, recognised without importing them: the SDK ships its own
    copy of the library under another name in some versions."""
    module = type(exc).__module__.split(".")[0]
    return module.startswith(("httpx", "httpcore"))


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc).strip()
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    return text.splitlines()[0][:120] if text else type(exc).__name__
