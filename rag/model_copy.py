"""A Q8_0 copy of the generation model, made once by llama.cpp's own quantizer.

The embedded SmolLM2 ships as Q4_1, a type llama.cpp's CPU has no fast batch kernels for: a
~370-token prompt is read at ~190 tokens/s on two cores, so the reader waits ~2 s before the
first word. The same weights as Q8_0 read at ~330 tokens/s and decode ~10% faster (README,
Performance). Q8_0 holds every Q4_1 weight to within 1/254 of its block's largest weight, about
a tenth of the error Q4_1 itself already has, so the model says the same things.

`generator.weights` chooses: "auto" (the default) makes the copy for the embedded model only, a
GGUF of your own is loaded as it is unless you ask for "q8_0". The copy is cached beside the
embedder's (`<data_dir>/models`, `embedding.cache_dir`), named by the source's size and
modification time, and written under a temporary name first, so two processes never load half a
file. `python -m rag.model_copy` (scripts/setup runs it) makes the embedded model's copy once
per install.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Weights = Literal["as-is", "q8_0"]


def copy_path(source: Path, cache_dir: Path) -> Path:
    """Where the Q8_0 copy of `source` lives (it may not exist yet)."""
    stat = source.stat()
    return cache_dir / f"{source.stem}.{stat.st_size}-{stat.st_mtime_ns}.q8_0.gguf"


def model_file(source: Path, weights: Weights, cache_dir: Path) -> Path:
    """The file to load: `source`, or its Q8_0 copy: the install's (made by scripts/setup),
    else the one in `cache_dir` (made now if missing). A copy that cannot be made costs speed,
    not the answer: `source` is loaded, with a log line."""
    from rag.models import installed_cache_dir

    if weights == "as-is":
        return source
    installed = copy_path(source, installed_cache_dir())
    if installed.is_file():
        return installed
    try:
        return q8_copy(source, cache_dir)
    except Exception as exc:  # disk full, read-only cache, a quantizer error
        logger.warning("no Q8_0 copy of %s (%s); loading it as it is", source.name, exc)
        return source


def q8_copy(source: Path, cache_dir: Path) -> Path:
    target = copy_path(source, cache_dir)
    if target.is_file():
        return target
    import llama_cpp

    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True  # the source is already quantized (Q4_1)
    params.nthread = max(1, len(os.sched_getaffinity(0)))
    try:
        with _quiet_native_output():
            code = llama_cpp.llama_model_quantize(
                str(source).encode(), str(partial).encode(), ctypes.byref(params)
            )
        if code != 0 or not partial.is_file():
            raise RuntimeError(f"llama.cpp's quantizer returned {code}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("made a Q8_0 copy of %s for faster prompt reading: %s", source.name, target)
    return target


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """The quantizer prints a line per tensor on the C stderr: keep it out of the chat."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main() -> int:
    """`python -m rag.model_copy`: the embedded model's Q8_0 copy, in the install's cache."""
    from rag.models import default_generation_model, installed_cache_dir

    target = q8_copy(default_generation_model(), installed_cache_dir())
    print(f"Q8_0 copy of the embedded model ready: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
