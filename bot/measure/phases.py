"""The two measured phases (ingest, serve) and the raw llama.cpp baseline beside them."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bot.errors import FolioError
from bot.measure.machine import embedder_info
from bot.measure.plan import BenchPlan
from bot.measure.processes import MemoryWatch
from bot.measure.recording import forget_query_cache, serve

if TYPE_CHECKING:
    from config.settings import Settings


def ingest_phase(settings: Settings, plan: BenchPlan) -> dict[str, Any]:
    """Cold ingest into an empty collection, then embedding alone on the stored chunk texts."""
    from rag.backends import open_store
    from rag.factory import build_engine
    from rag.ingest import EMBED_BATCH

    with MemoryWatch() as memory:
        engine = build_engine(settings)
        try:
            started = time.perf_counter()
            embedder = engine.embedder  # loaded here, so the ingest time is documents only
            load_s = time.perf_counter() - started
            report = engine.ingest_paths([plan.docs], collection=plan.collection)
            store = open_store(settings)
            try:
                ids = store.chunk_ids(plan.collection)
                stored = store.chunks(ids)
            finally:
                store.close()
            texts = [stored[i].text for i in ids if i in stored]
            started = time.perf_counter()
            for start in range(0, len(texts), EMBED_BATCH):
                embedder.embed_documents(texts[start : start + EMBED_BATCH])
            embed_s = time.perf_counter() - started
        finally:
            engine.close()
    return {
        "files": report.files,
        "pages": report.pages,
        "chunks": report.chunks,
        "failures": [[o.name, o.reason] for o in report.failures],
        "ingest_seconds": report.seconds,
        "embedder_load_s": load_s,
        "embed_chunks": len(texts),
        "embed_seconds": embed_s,
        "embedding_model": embedder.name,
        "embedder": embedder_info(embedder),
        **memory.figures(),
    }


def serve_phase(settings: Settings, plan: BenchPlan) -> dict[str, Any]:
    """Ready time, retrieval latency, then answers through the real BotCore and worker."""
    from rag.factory import build_engine, engine_options
    from rag.prompt import PromptBuilder

    prompt_limits = engine_options(settings).prompt

    with MemoryWatch() as memory:
        started = time.perf_counter()
        engine = build_engine(settings)
        engine.warm_up()
        ready_s = time.perf_counter() - started
        try:
            started = time.perf_counter()
            engine.retrieve(plan.retrieval[0], collection=plan.collection)  # opens the index
            index_open_ms = (time.perf_counter() - started) * 1000
            forget_query_cache(engine)
            retrieval_ms = []
            for question in plan.retrieval:
                started = time.perf_counter()
                engine.retrieve(question, collection=plan.collection)
                retrieval_ms.append((time.perf_counter() - started) * 1000)
            forget_query_cache(engine)  # the answers below embed their questions as users' would
            with _raw_baseline(settings) as raw:

                def time_raw(question: str, tokens: int) -> dict[str, Any]:
                    """The prompt Folio built for `question`, straight through llama.cpp."""
                    passages = engine.retrieve(question, collection=plan.collection)
                    built = PromptBuilder(engine.generator, prompt_limits).build(
                        question, passages
                    )
                    assert raw is not None
                    return raw.time(built.prompt, tokens)

                served = asyncio.run(
                    serve(engine, settings, plan, time_raw if raw is not None else None)
                )
                served["raw"] = {
                    "load_s": raw.load_s if raw is not None else None,
                    "system_info": raw.system_info if raw is not None else None,
                    "runs": served.pop("raw_runs"),
                }
            figures = memory.figures()
            model = engine.model_name
        finally:
            engine.close()
    return {
        "ready_s": ready_s,
        "model": model,
        # what llama.cpp loaded: the file as it is, or its Q8_0 copy (generator.weights)
        "model_weights": settings.generator.weights_to_load
        if settings.generator.backend == "local" else None,
        "index_open_ms": index_open_ms,
        "retrieval_ms": retrieval_ms,
        **served,
        **figures,
    }


@contextlib.contextmanager
def _raw_baseline(settings: Settings) -> Iterator[RawLlama | None]:
    """The raw llama.cpp process for the local back end; none for a generation server."""
    if settings.generator.backend != "local":
        yield None
        return
    with RawLlama(settings) as raw:
        yield raw


class RawLlama:
    """A child process that times prompts through llama-cpp-python directly, one at a time."""

    def __init__(self, settings: Settings) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._child = context.Process(
            target=_raw_worker, args=(child_end, settings), name="folio-bench-raw"
        )
        self._child.start()
        child_end.close()
        loaded = self._receive()  # the model is loaded and warm
        self.load_s = float(loaded["load_s"])
        self.system_info = str(loaded.get("system_info", ""))

    def _receive(self) -> dict[str, Any]:
        try:
            ok, value = self._conn.recv()
        except EOFError:
            raise FolioError("the benchmark's raw llama.cpp process died") from None
        if not ok:
            raise FolioError(f"the benchmark's raw llama.cpp process failed:\n{value}")
        return dict(value)

    def time(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        self._conn.send((prompt, max_tokens))
        return self._receive()

    def __enter__(self) -> RawLlama:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._conn.close()
        self._child.join(10)
        if self._child.is_alive():
            self._child.kill()
            self._child.join()


def _raw_worker(conn: Any, settings: Settings) -> None:
    from rag.model_copy import model_file
    from rag.models import default_generation_model
    from rag.rawbench import llama_system_info, load_raw_model, time_raw_completion

    generation = settings.generator
    # The file Folio's model process loads (the embedded model's Q8_0 copy by default).
    model = model_file(generation.model_path or default_generation_model(),
                       generation.weights_to_load, settings.model_cache_dir)
    llm = None
    try:
        started = time.perf_counter()
        llm = load_raw_model(
            model,
            context_tokens=generation.context_tokens,
            threads=generation.threads,
            batch_tokens=generation.batch_tokens,
            extra_buffers=generation.extra_buffer_types,
        )
        load_s = time.perf_counter() - started
        time_raw_completion(llm, "Hi", 1)  # warm; not measured
        conn.send((True, {"load_s": load_s, "system_info": llama_system_info()}))
        while (request := conn.recv()) is not None:
            prompt, max_tokens = request
            conn.send((True, time_raw_completion(
                llm, prompt, max_tokens, repeat_penalty=generation.repeat_penalty)))
    except EOFError:
        pass
    except BaseException:
        conn.send((False, traceback.format_exc()))
    finally:
        if llm is not None:
            llm.close()
        conn.close()
