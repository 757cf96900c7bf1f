"""The worker pool (generator.concurrency > 1) and the retry of an unreachable generation server,
with the scripted FakeEngine; and the real server generator against a parallel streaming stub."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, RecordingAdapter, StartCore, make_job
from scale_llama_server import StreamingStub

from bot.core import BotCore, CoreOptions
from bot.errors import GeneratorUnavailable
from bot.jobs import Attachment, JobKind
from bot.ports import AnswerEngine
from bot.render import STATUS_SEARCHING
from bot.worker import MAX_ATTEMPTS
from rag.generate_openai import OpenAICompatibleGenerator

URL = "http://127.0.0.1:9/v1"


@pytest.fixture
async def start_core(tmp_path: Path) -> AsyncIterator[StartCore]:
    cores: list[BotCore] = []

    async def start(engine: AnswerEngine, *adapters: Any, **options: Any) -> BotCore:
        options.setdefault("edit_interval_s", 0.0)
        options.setdefault("stop_grace_s", 2.0)
        options.setdefault("retry_backoff_s", 0.05)
        core = BotCore(engine, tmp_path / "bot.sqlite", CoreOptions(**options))
        for adapter in adapters:
            core.register(adapter)
        await core.start()
        cores.append(core)
        return core

    yield start
    for core in cores:
        await core.stop()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql).fetchall()


def searching(adapter: RecordingAdapter, job_id: int) -> bool:
    return any(
        e.kind == "post_status" and e.payload == STATUS_SEARCHING for e in adapter.for_job(job_id)
    )


async def test_up_to_n_questions_run_at_once_on_n_threads(start_core: StartCore) -> None:
    engine = FakeEngine()
    gate = engine.hold()
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, concurrency=2)
    first, second, third = [await core.submit(make_job("alpha", u)) for u in ("ann", "bob", "cat")]
    await adapter.wait_until(lambda: searching(adapter, first.job_id)
                             and searching(adapter, second.job_id))
    worker = core._worker
    assert worker is not None
    assert sorted(j.id for j in worker.running_jobs) == [first.job_id, second.job_id]
    assert not searching(adapter, third.job_id)  # two slots, both taken
    gate.set()
    for accepted in (first, second, third):
        assert (await adapter.wait_final(accepted.job_id)).kind == "post_answer"
    assert len(engine.thread_ids) == 2 and threading.get_ident() not in engine.thread_ids


async def test_ingest_waits_for_running_answers_and_runs_alone(start_core: StartCore) -> None:
    engine = FakeEngine(token_delay_s=0.01)
    gate = engine.hold()
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, concurrency=2)
    question = await core.submit(make_job("alpha", "ann", "one two three"))
    await adapter.wait_until(lambda: searching(adapter, question.job_id))
    ingest = await core.submit(make_job(
        "alpha", "admin", kind=JobKind.INGEST,
        attachment=Attachment("new.pdf", b"%PDF-1.4 fake"),
    ))
    after = await core.submit(make_job("alpha", "bob", "four five six"))
    await asyncio.sleep(0.3)  # time enough for the worker to start them, were that allowed
    assert not adapter.for_job(ingest.job_id)[1:]  # only its acknowledgement: it waits
    assert not searching(adapter, after.job_id)  # nothing overtakes or joins an ingest
    gate.set()
    finals = [await adapter.wait_final(a.job_id) for a in (question, ingest, after)]
    assert [f.kind for f in finals] == ["post_answer", "post_ingest_report", "post_answer"]
    ingest_events = [e for e in adapter.for_job(ingest.job_id) if e.kind != "acknowledge"]
    after_events = [e for e in adapter.for_job(after.job_id) if e.kind != "acknowledge"]
    assert finals[0].at <= ingest_events[0].at  # the answer finished before the ingest began
    assert finals[1].at <= after_events[0].at  # and the next question waited for the ingest


async def test_cancel_one_of_two_running_answers(start_core: StartCore) -> None:
    engine = FakeEngine()
    gate = engine.hold()
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, concurrency=2)
    ann = await core.submit(make_job("alpha", "ann"))
    bob = await core.submit(make_job("alpha", "bob"))
    await adapter.wait_until(lambda: searching(adapter, ann.job_id) and searching(adapter, bob.job_id))
    await core.cancel("alpha", "bob")
    assert (await adapter.wait_final(bob.job_id)).payload == "Cancelled."
    gate.set()
    assert (await adapter.wait_final(ann.job_id)).kind == "post_answer"


async def test_stop_requeues_every_running_job(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.hold()
    adapter = RecordingAdapter("alpha")
    db = tmp_path / "bot.sqlite"
    core = BotCore(engine, db, CoreOptions(edit_interval_s=0, stop_grace_s=0.2, concurrency=2))
    core.register(adapter)
    await core.start()
    jobs = [await core.submit(make_job("alpha", u)) for u in ("ann", "bob")]
    await adapter.wait_until(lambda: all(searching(adapter, j.job_id) for j in jobs))
    await core.stop()
    assert rows(db, "SELECT status FROM jobs ORDER BY id") == [("pending",), ("pending",)]
    assert not adapter.finals()
    # After a restart both are answered, once each.
    restarted = BotCore(FakeEngine(), db, CoreOptions(edit_interval_s=0, concurrency=2))
    restarted.register(adapter)
    await restarted.start()
    try:
        for job in jobs:
            assert (await adapter.wait_final(job.job_id)).kind == "post_answer"
    finally:
        await restarted.stop()
    assert len(adapter.finals()) == 2


async def test_an_unreachable_server_is_retried_then_answered(
    start_core: StartCore, tmp_path: Path
) -> None:
    engine = FakeEngine()
    down = GeneratorUnavailable(URL, "connection refused")
    engine.enqueue(down, down)  # two failed attempts, then the default answer
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, concurrency=2)
    accepted = await core.submit(make_job("alpha", "ann"))
    final = await adapter.wait_final(accepted.job_id)
    assert final.kind == "post_answer"
    assert len(engine.calls) == 3
    notices = [e.payload for e in adapter.for_job(accepted.job_id) if e.kind == "post_status"]
    assert sum("not answering; trying again" in n for n in notices) == 2
    assert rows(tmp_path / "bot.sqlite", "SELECT status, attempts FROM jobs") == [("done", 3)]


async def test_after_the_last_attempt_the_user_is_told_the_server_is_unreachable(
    start_core: StartCore, tmp_path: Path
) -> None:
    engine = FakeEngine()
    engine.enqueue(*[GeneratorUnavailable(URL, "connection refused")] * MAX_ATTEMPTS)
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter)
    accepted = await core.submit(make_job("alpha", "ann", "Where is the ferry?"))
    final = await adapter.wait_final(accepted.job_id)
    assert final.kind == "post_error"
    assert final.payload.startswith(f"The generation server at {URL} is unreachable")
    assert len(engine.calls) == MAX_ATTEMPTS
    db = tmp_path / "bot.sqlite"
    deadline = time.monotonic() + 5  # delivery is recorded just after the reply is sent
    while not rows(db, "SELECT 1 FROM jobs WHERE delivered_at IS NOT NULL"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert rows(db, "SELECT status, attempts FROM jobs") == [("failed", MAX_ATTEMPTS)]
    history = rows(db, "SELECT question, status, error FROM history")
    assert history == [("Where is the ferry?", "failed", final.payload)]


async def test_cancel_during_the_backoff_cancels(start_core: StartCore) -> None:
    engine = FakeEngine()
    engine.enqueue(GeneratorUnavailable(URL, "connection refused"))
    adapter = RecordingAdapter("alpha")
    core = await start_core(engine, adapter, retry_backoff_s=30.0)
    accepted = await core.submit(make_job("alpha", "ann"))
    await adapter.wait_until(lambda: any(
        e.kind == "post_status" and "trying again" in e.payload
        for e in adapter.for_job(accepted.job_id)
    ))
    started = time.monotonic()
    await core.cancel("alpha", "ann")
    assert (await adapter.wait_final(accepted.job_id)).payload == "Cancelled."
    assert time.monotonic() - started < 2.0
    assert len(engine.calls) == 1


def test_generator_requests_really_run_in_parallel() -> None:
    """Two threads generating through one client: the (parallel) server sees both at once."""
    stub = StreamingStub("The ferry departs every ninety minutes from Pier 7.", 0.05).start()
    try:
        generator = OpenAICompatibleGenerator(
            stub.base_url, model_name="", api_key=None, context_tokens=2048,
            connect_timeout_s=2, read_timeout_s=10, retries=0, temperature=0,
            repeat_penalty=1.0,
        )
        assert generator.name == "stub-model"  # the first model the server lists
        messages: Any = [{"role": "user", "content": "How often does the ferry leave?"}]
        results: list[Any] = []

        def ask() -> None:
            results.append(generator.generate(
                generator.render(messages), max_tokens=32, messages=messages
            ))

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert [r.text for r in results] == [stub.answer] * 2
        assert all(r.finish_reason == "stop" and r.completion_tokens == 9 for r in results)
        assert stub.max_in_flight() == 2
    finally:
        stub.stop()


def test_bench_takes_the_server_options_and_checks_them() -> None:
    import argparse

    from bot.app import load_settings
    from bot.measure.bench import with_generation_options
    from config.errors import ConfigError

    settings = load_settings(data_dir=Path("unused"))
    options = argparse.Namespace(
        backend="openai", base_url="http://127.0.0.1:8080/v1/", server_model=None, parallel=3
    )
    generator = with_generation_options(settings, options).generator
    assert (generator.backend, generator.base_url, generator.concurrency) == (
        "openai", "http://127.0.0.1:8080/v1", 3
    )
    local = argparse.Namespace(backend=None, base_url=None, server_model=None, parallel=2)
    with pytest.raises(ConfigError, match="concurrency must be 1 with the local backend"):
        with_generation_options(settings, local)


def test_the_api_key_comes_only_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.app import load_settings
    from config.errors import ConfigError

    config = tmp_path / "folio.toml"
    config.write_text('[generator]\nbackend = "openai"\nbase_url = "http://127.0.0.1:8080/v1"\n')
    monkeypatch.setenv("FOLIO_CONFIG", str(config))
    monkeypatch.setenv("FOLIO_GENERATOR_API_KEY", "sk-test-123")
    settings = load_settings()
    assert settings.generator_api_key is not None
    assert settings.generator_api_key.get_secret_value() == "sk-test-123"
    assert "sk-test-123" not in repr(settings) and "sk-test-123" not in settings.model_dump_json()
    config.write_text('[generator]\nbackend = "openai"\napi_key = "sk-in-the-file"\n')
    with pytest.raises(ConfigError, match="FOLIO_GENERATOR_API_KEY"):
        load_settings()
