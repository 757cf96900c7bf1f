"""Raw llama.cpp timings, for `folio bench`: the same prompt through llama-cpp-python directly.

The baseline that Folio's end-to-end answer time is compared with (its "overhead ratio"). Only
rag/ imports ML libraries, so the benchmark in bot/ calls this; llama_cpp is imported lazily.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from config.errors import ConfigError
from rag.cpu import quiet_openmp_threads


def load_raw_model(
    model_path: Path | str,
    *,
    context_tokens: int,
    threads: int,
    batch_tokens: int = 512,
    extra_buffers: bool = False,
) -> Any:
    """A `Llama` loaded the way Folio's model process loads it: the same OpenMP wait policy and
    weight buffers, so the two differ only in Folio (and the baseline does not segfault on an
    AMX Xeon). The caller closes it (`.close()`)."""
    quiet_openmp_threads()
    from rag.generate import extra_buffer_types

    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ConfigError("llama-cpp-python is not installed: run scripts/setup.") from exc
    if not Path(model_path).is_file():
        raise ConfigError(f"The generation model {model_path} does not exist.")
    with extra_buffer_types(extra_buffers):
        return Llama(
            model_path=str(model_path),
            n_ctx=context_tokens,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=min(batch_tokens, context_tokens),
            verbose=False,
        )


def time_raw_completion(
    llm: Any, prompt: str, max_tokens: int, *, repeat_penalty: float = 1.0
) -> dict[str, Any]:
    """Greedy streamed completion of `prompt` on a loaded model (`load_raw_model`); returns
    seconds to the first token and in total.

    Result keys: `ttft_s`, `total_s`, `tokens` (streamed pieces, about one per token),
    `prompt_tokens`.
    """
    prompt_tokens = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
    started = time.perf_counter()
    first: float | None = None
    pieces = 0
    for _chunk in llm.create_completion(
        prompt,
        max_tokens=max(1, max_tokens),
        temperature=0.0,
        top_k=1,
        repeat_penalty=repeat_penalty,
        stream=True,
    ):
        if first is None:
            first = time.perf_counter() - started
        pieces += 1
    total = time.perf_counter() - started
    return {
        "ttft_s": total if first is None else first,
        "total_s": total,
        "tokens": pieces,
        "prompt_tokens": prompt_tokens,
    }


def llama_system_info() -> str:
    """llama.cpp's own report of the CPU features it was built for and uses ("AVX512 = 1 | ...")."""
    try:
        import llama_cpp
    except ImportError:
        return ""
    info = llama_cpp.llama_print_system_info()
    return info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
