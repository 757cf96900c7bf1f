"""The "openai" generation back end against llama-cpp-python's real server on loopback: streamed,
cited answers through the engine and through the worker (two at once), token counts, and what
a server that is down, silent or killed mid-answer does to a question."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import RecordingAdapter, make_job
from scale_llama_server import (
    QUESTION,
    SECOND_QUESTION,
    LlamaServer,
    SilentServer,
    free_port,
    guide_engine,
    running_llama_server,
    server_settings,
)

from bot.core import BotCore, CoreOptions
from rag.engine import RagEngine
from rag.errors import GenerationCancelled, GeneratorUnavailable
from rag.generate_openai import OpenAICompatibleGenerator
from rag.models import default_generation_model
from rag.types import AnswerProgress

pytestmark = pytest.mark.slow

MESSAGES: Any = [
    {"role": "system", "content": "Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with running_llama_server(tmp_path_factory.mktemp("llama")) as server:
        yield server


@pytest.fixture(scope="module")
def engine(server: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RagEngine]:
    # Token counts from the GGUF: llama-cpp-python's server runs one request at a time, so
    # counting on it would make a second question's prompt wait for the first answer.
    settings = server_settings(
        tmp_path_factory.mktemp("data"), server.base_url, concurrency=2,
        tokenizer_path=default_generation_model(),
    )
    engine = guide_engine(settings)
    yield engine
    engine.close()


def generator_for(base_url: str, **options: Any) -> OpenAICompatibleGenerator:
    settings: dict[str, Any] = {
        "model_name": "", "api_key": None, "context_tokens": 2048, "connect_timeout_s": 2.0,
        "read_timeout_s": 20.0, "retries": 0, "temperature": 0.0, "repeat_penalty": 1.15,
        **options,
    }
    return OpenAICompatibleGenerator(base_url, **settings)


def test_the_engine_streams_a_cited_answer_from_the_server(engine: RagEngine) -> None:
    progress: list[AnswerProgress] = []
    answer = engine.answer(QUESTION, collection="guide", on_progress=progress.append)
    partials = [p.partial_text for p in progress if p.partial_text]
    # The documents' sentence is the first draft; every draft is checked, cited text.
    assert partials and "ninety minutes" in partials[0]
    assert all("[guide.pdf p.2]" in draft for draft in partials)
    assert not answer.abstained
    assert "ninety minutes" in answer.text
    assert [(c.document, c.page) for c in answer.citations] == [("guide.pdf", 2)]
    assert answer.model == default_generation_model().name
    assert answer.tokens > 0 and answer.prompt_tokens > 0
    assert answer.timings.first_token is not None and answer.timings.generation > 0


def test_token_counts_match_the_models_own_tokenizer(server: LlamaServer) -> None:
    on_server = generator_for(server.base_url)
    local = generator_for(server.base_url, tokenizer_path=default_generation_model())
    text = "The ferry to Marrow Island departs every ninety minutes from Pier 7."
    assert on_server.count_tokens(text) == local.count_tokens(text) > 10
    # With the GGUF the template is exact; without it, an approximation and a margin.
    assert local.render(MESSAGES).startswith("<|im_start|>system")
    assert on_server.context_tokens < local.context_tokens == 2048


async def test_the_worker_answers_two_questions_at_once(engine: RagEngine, tmp_path: Path) -> None:
    adapter = RecordingAdapter("alpha")
    core = BotCore(engine, tmp_path / "bot.sqlite", CoreOptions(edit_interval_s=0, concurrency=2))
    core.register(adapter)
    await core.start()
    try:
        jobs = [
            await core.submit(make_job("alpha", user, text, collection="guide"))
            for user, text in (("ann", QUESTION), ("bob", SECOND_QUESTION))
        ]
        finals = [await adapter.wait_final(j.job_id, within=180) for j in jobs]
    finally:
        await core.stop()
    assert [f.kind for f in finals] == ["post_answer", "post_answer"]
    assert [(c.document, c.page) for c in finals[0].payload.citations] == [("guide.pdf", 2)]
    assert [(c.document, c.page) for c in finals[1].payload.citations] == [("guide.pdf", 3)]
    assert any(e.kind == "stream_partial" for e in adapter.for_job(jobs[0].job_id))
    # Each generation window runs from the first draft (the documents' sentences, shown as the
    # request goes to the server) to the final reply. They overlap: both requests were at the
    # server at once. (llama-cpp-python's server then decodes them one after the other; a
    # server with parallel slots interleaves them.)
    windows = []
    for job, final in zip(jobs, finals, strict=True):
        writing = next(e.at for e in adapter.for_job(job.job_id) if e.kind == "stream_partial")
        windows.append((writing, final.at))
    overlap = min(end for _, end in windows) - max(start for start, _ in windows)
    assert overlap > 0, windows


def test_a_server_that_is_down_is_named_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    generator = generator_for(url)
    started = time.monotonic()
    with pytest.raises(GeneratorUnavailable) as down:
        generator.warm_up()
    assert time.monotonic() - started < 5
    assert down.value.message.startswith(f"The generation server at {url} is unreachable")
    assert "connection refused" in down.value.message
    with pytest.raises(GeneratorUnavailable):
        generator.generate("Hi", max_tokens=8, messages=MESSAGES)


def test_a_silent_server_times_out_and_cancel_does_not_wait_for_it() -> None:
    silent = SilentServer()
    try:
        local_counts = {"model_name": "m", "tokenizer_path": default_generation_model()}
        generator = generator_for(silent.base_url, read_timeout_s=1.0, **local_counts)
        started = time.monotonic()
        with pytest.raises(GeneratorUnavailable) as timed_out:
            generator.generate("Hi", max_tokens=8, messages=MESSAGES)
        assert 0.9 < time.monotonic() - started < 4
        assert "no reply within 1s" in timed_out.value.message
        # Counting tokens on a silent server times out the same way.
        with pytest.raises(GeneratorUnavailable):
            generator_for(silent.base_url, read_timeout_s=1.0).count_tokens("Hello")
        # A cancel lands within a second, long before a 30 s read timeout.
        patient = generator_for(silent.base_url, read_timeout_s=30.0, **local_counts)
        cancel_at = time.monotonic() + 0.3
        with pytest.raises(GenerationCancelled):
            patient.generate("Hi", max_tokens=8, messages=MESSAGES,
                             cancelled=lambda: time.monotonic() > cancel_at)
        assert time.monotonic() - cancel_at < 1.0
    finally:
        silent.close()


def test_a_server_killed_mid_answer_raises_unavailable(tmp_path: Path) -> None:
    with running_llama_server(tmp_path) as server:
        generator = generator_for(server.base_url)
        texts: list[str] = []

        def kill_on_first_words(text: str) -> None:
            if not texts:
                server.kill()
            texts.append(text)

        started = time.monotonic()
        with pytest.raises(GeneratorUnavailable) as broke:
            generator.generate("", max_tokens=200, on_text=kill_on_first_words, messages=[
                {"role": "user", "content": "Write a long story about a ferry."}
            ])
        assert texts and time.monotonic() - started < 15
        assert server.base_url in broke.value.message


async def test_a_question_whose_server_dies_is_retried_then_told_clearly(
    tmp_path: Path,
) -> None:
    """Killed mid-answer: the job goes back in the queue, is tried until MAX_ATTEMPTS, and then
    the user gets one clear line; the job and its history row are complete, nothing is lost."""
    with running_llama_server(tmp_path) as server:
        settings = server_settings(tmp_path / "data", server.base_url, concurrency=2)
        engine = guide_engine(settings)
        adapter = _KillOnFirstWords(server)
        core = BotCore(engine, settings.bot_db, CoreOptions(
            edit_interval_s=0, concurrency=2, retry_backoff_s=0.2
        ))
        core.register(adapter)
        await core.start()
        try:
            accepted = await core.submit(make_job("alpha", "ann", QUESTION, collection="guide"))
            final = await adapter.wait_final(accepted.job_id, within=120)
            await asyncio.sleep(0.2)  # the delivery mark follows the reply
            job = await core.job(accepted.job_id)
            history = await core.history("alpha", "ann")
        finally:
            await core.stop()
            engine.close()
    assert adapter.killed
    assert final.kind == "post_error"
    assert final.payload.startswith(f"The generation server at {server.base_url} is unreachable")
    retries = [e for e in adapter.for_job(accepted.job_id)
               if e.kind == "post_status" and "trying again" in e.payload]
    assert len(retries) == 2
    assert job is not None and job.status.value == "failed" and job.attempts == 3
    assert [(h.question, h.status, h.error) for h in history] == [
        (QUESTION, "failed", final.payload)
    ]


class _KillOnFirstWords(RecordingAdapter):
    """Records like RecordingAdapter; SIGKILLs the server when the first words stream in."""

    def __init__(self, server: LlamaServer) -> None:
        super().__init__("alpha")
        self._server = server
        self.killed = False

    async def stream_partial(self, job: Any, text: str) -> None:
        if not self.killed:
            self.killed = True
            self._server.kill()
        await super().stream_partial(job, text)
