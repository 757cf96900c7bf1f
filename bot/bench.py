"""`folio bench`: how fast Folio is on this machine, measured through the paths users take.

Two phases, each in its own spawned process so each has its own peak memory:

    ingest  build the engine, ingest the PDFs into a fresh data dir, then time embedding alone
    serve   build + warm up (ready time), retrieval per question, then the real `BotCore` with a
            recording adapter: questions one at a time (TTFT, answer time, tokens/s), then N
            questions from U users at once (the queue test)

After each one-at-a-time answer, the same prompt goes through llama-cpp-python directly, with the
output length Folio produced (the baseline of the overhead ratio), in a third process that the
serve phase drives: right after its Folio counterpart, so both see the same CPU contention, and
without adding the second model to the serving process's memory.

With a generation server (`--backend openai --base-url URL --parallel N`, or the same in the
settings) the answers go to the server instead, up to N at once through the worker pool; the
queue test then runs at N and, for comparison, at 1 (so the gain from parallel requests shows as
`queue_speedup`), and the raw llama.cpp baseline is skipped (reported as null: there is no
in-process model to compare with).

Every timed figure is measured `--repeat` times (default 3, each repetition a fresh data dir and
fresh processes): the report gives the median, with min/median/max in `spread`, and the ratios
that compare Folio with raw llama.cpp (answer time, decode rate) per repetition in `runs`, each
from one repetition's own pair of measurements. The machine section records the CPU model, the
instruction-set features it has (and llama.cpp's and ONNX Runtime's view of them), and which
embedder ran.

The parent only orchestrates and prints: one JSON object with `--json`, else a table with the
tutorial baseline and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import FolioError
from bot.evaluate import _percentile, load_questions
from bot.jobs import Job, JobKind
from config.errors import ConfigError

if TYPE_CHECKING:
    from bot.core import BotCore
    from config.settings import Settings
    from rag.engine import RagEngine
    from rag.types import Answer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DOCS = Path("../shared/eval/pdfs")
DEFAULT_QUESTIONS = Path("../shared/eval/dev.jsonl")
PLATFORM = "bench"
ANSWER_TIMEOUT_S = 300.0

# The tutorial bot this project replaces, measured on the same kind of machine.
BASELINE = {"ingest_pages_per_s": 3.4, "answer_p50_s": 3.7, "peak_rss_mb": 1200.0}
# (report key, comparison, limit, label): issue 14's targets, checked on the medians
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("answer_p50_s", "<=", 2.5, "answer p50 <= 2.5 s"),
    ("ttft_p50_s", "<=", 1.0, "TTFT p50 <= 1.0 s"),
    ("overhead_ratio", "<=", 1.05, "overhead <= 1.05x raw llama.cpp"),
    ("decode_ratio", ">=", 0.95, "decode >= 0.95x raw"),
    ("final_edit_p50_ms", "<=", 50.0, "final text -> final edit p50 <= 50 ms"),
    ("queue_answers_per_min", ">=", 25.0, "burst >= 25 answers/min"),
    ("peak_rss_serving_mb", "<=", 900.0, "serving RSS <= 900 MB"),
    ("peak_rss_ingest_mb", "<=", 1000.0, "ingest RSS <= 1000 MB"),
    ("ingest_pages_per_s", ">=", 15.0, "ingest >= 15 pages/s"),
)
# The figures each repetition reports side by side (ratios from one repetition's own pair).
PER_RUN_KEYS = (
    "overhead_ratio", "answer_p50_s", "raw_answer_p50_s", "decode_ratio",
    "decode_tokens_per_s", "raw_decode_tokens_per_s", "ingest_pages_per_s",
    "embed_chunks_per_s", "final_edit_p50_ms",
)
REQUIRED_KEYS = (
    "ingest_pages_per_s", "ingest_chunks_per_s", "embed_chunks_per_s", "ingest_seconds",
    "retrieval_p50_ms", "retrieval_p95_ms", "ttft_p50_s", "ttft_p95_s", "answer_p50_s",
    "answer_p95_s", "decode_tokens_per_s", "prefill_tokens_per_s", "raw_answer_p50_s",
    "raw_ttft_p50_s", "overhead_ratio", "queue_answers_per_min", "queue_total_s",
    "queue_wait_p95_s", "queue_answered", "peak_rss_serving_mb", "peak_rss_ingest_mb",
    "ready_s", "model", "machine", "decode_ratio", "raw_decode_tokens_per_s",
    "final_edit_p50_ms", "repeats", "spread", "runs",
)


@dataclass(frozen=True, slots=True)
class BenchPlan:
    """What to run: the inputs and the sizes of each measurement."""

    docs: Path
    retrieval: list[str]  # every question: retrieval latency
    sequential: list[str]  # answerable questions asked one at a time
    queued: list[str]  # asked all at once by `users` users
    users: int
    collection: str = "bench"
    repeat: int = 3  # each timed figure is measured this many times


# --- the command -----------------------------------------------------------------------------


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "bench", help="measure ingest, retrieval, answer latency, queue throughput and memory"
    )
    parser.add_argument("--docs", type=Path, default=None,
                        help=f"folder of PDFs (default: {DEFAULT_DOCS}, from the repository root)")
    parser.add_argument("--questions", type=Path, default=None,
                        help=f"questions JSONL (default: {DEFAULT_QUESTIONS})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", type=Path, default=None, help="GGUF to generate with")
    parser.add_argument("--limit", type=int, default=12,
                        help="answerable questions asked one at a time (default 12)")
    parser.add_argument("--concurrency", type=int, default=20,
                        help="questions submitted at once in the queue test (default 20)")
    parser.add_argument("--users", type=int, default=5,
                        help="distinct users asking them (default 5)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measure everything this many times: min/median/max (default 3)")
    parser.add_argument("--answer-mode", choices=("hybrid", "generate"), default="hybrid",
                        help="how the model writes during the bench (default hybrid; the "
                        "evidence mode calls no model, its latency is in `folio eval`)")
    parser.add_argument("--backend", choices=("local", "openai"), default=None,
                        help="generate in-process (local) or on an OpenAI-compatible server "
                        "(default: generator.backend from the settings)")
    parser.add_argument("--base-url", default=None,
                        help="the server's API root, e.g. http://127.0.0.1:8080/v1 "
                        "(default: generator.base_url)")
    parser.add_argument("--server-model", default=None,
                        help="model name sent to the server (default: generator.model_name, "
                        "else the first model the server lists)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="questions generated at once through the worker pool, server back "
                        "end only (default: generator.concurrency); the queue test also runs "
                        "at 1 to show the gain")
    parser.set_defaults(handler=_handle)


def _handle(settings: Settings, collection: str, args: argparse.Namespace) -> int:
    try:
        settings, plan = prepare(settings, args)
    except ConfigError as exc:
        print(f"folio bench: {exc}", file=sys.stderr)
        return 2
    report = run_bench(settings, plan, progress=_stderr_progress)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _stderr_progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _resolve(path: Path | None, default: Path) -> Path:
    if path is None:
        return (REPO_ROOT / default).resolve()
    return path.expanduser().resolve()


def prepare(settings: Settings, args: argparse.Namespace) -> tuple[Settings, BenchPlan]:
    """Check the inputs and turn the arguments into a plan (ConfigError names what is wrong)."""
    docs = _resolve(args.docs, DEFAULT_DOCS)
    questions_path = _resolve(args.questions, DEFAULT_QUESTIONS)
    if not docs.is_dir() or not any(docs.rglob("*.pdf")):
        raise ConfigError(f"no folder of PDFs at {docs}: give --docs DIR")
    if not questions_path.is_file():
        raise ConfigError(f"no questions file at {questions_path}: give --questions FILE")
    for name in ("limit", "concurrency", "users", "repeat"):
        if getattr(args, name, 1) < 1:
            raise ConfigError(f"--{name} must be at least 1")
    settings = _with_generation_options(settings, args)
    # The embedder's derived models (the int8 ONNX export) stay in the real data dir's cache:
    # each repetition ingests into a fresh temporary data dir, but must not re-export.
    embedding = settings.embedding.model_copy(
        update={"cache_dir": settings.model_cache_dir.expanduser().resolve()}
    )
    settings = settings.model_copy(update={"embedding": embedding})
    if args.model is not None:
        model = args.model.expanduser().resolve()
        if not model.is_file():
            raise ConfigError(f"no model file at {model}")
        generator = settings.generator.model_copy(update={"model_path": model})
        settings = settings.model_copy(update={"generator": generator})
    questions = load_questions(questions_path)
    answerable = [q.question for q in questions if q.answerable] or [q.question for q in questions]
    if not answerable:
        raise ConfigError(f"{questions_path} has no questions")
    sequential = answerable[: args.limit]
    # The queue test continues where the sequential questions stopped, so it asks new ones.
    queued = [answerable[(args.limit + i) % len(answerable)] for i in range(args.concurrency)]
    plan = BenchPlan(
        docs=docs,
        retrieval=[q.question for q in questions],
        sequential=sequential,
        queued=queued,
        users=min(args.users, args.concurrency),
        repeat=getattr(args, "repeat", 3),
    )
    return settings, plan


def _with_generation_options(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with --backend, --base-url, --server-model and --parallel applied, validated
    like the configuration file (ConfigError names what is wrong)."""
    from pydantic import ValidationError

    from config.settings import GeneratorSettings

    # The bench measures the model against raw llama.cpp, so the model must write: by default
    # "hybrid" (answers quoting the documents alone take ~0.2 s; `folio eval` reports them).
    changes: dict[str, Any] = {"answer_mode": getattr(args, "answer_mode", None) or "hybrid"}
    for option, key in (("backend", "backend"), ("base_url", "base_url"),
                        ("server_model", "model_name"), ("parallel", "concurrency")):
        value = getattr(args, option, None)
        if value is not None:
            changes[key] = value
    try:
        generator = GeneratorSettings.model_validate(
            {**settings.generator.model_dump(), **changes}
        )
    except ValidationError as exc:
        problems = "; ".join(str(err["msg"]) for err in exc.errors())
        raise ConfigError(f"invalid generator options: {problems}") from None
    return settings.model_copy(update={"generator": generator})


def run_bench(
    settings: Settings, plan: BenchPlan, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the phases `plan.repeat` times, each in a fresh temporary data dir; return the
    combined report (see REQUIRED_KEYS and combine_reports)."""
    say = progress or (lambda message: None)
    machine = machine_info()
    reports = []
    for repetition in range(1, plan.repeat + 1):
        load_start = _load_average()
        with tempfile.TemporaryDirectory(prefix="folio-bench-") as temporary:
            run_settings = settings.model_copy(update={"data_dir": Path(temporary)})
            say(f"run {repetition}/{plan.repeat}: ingesting {plan.docs} (fresh data dir, "
                "own process)")
            ingest = run_in_child(ingest_phase, run_settings, plan)
            say(f"ingested {ingest['pages']} pages, {ingest['chunks']} chunks in "
                f"{ingest['ingest_seconds']:.1f}s; now serving (own process)")
            serve = run_in_child(serve_phase, run_settings, plan)
            raw = serve.pop("raw")
        report = build_report(ingest, serve, raw, machine)
        report["load_avg_start"], report["load_avg_end"] = load_start, _load_average()
        reports.append(report)
    combined = combine_reports(reports)
    combined["machine"]["load_avg_end"] = _load_average()
    return combined


# --- child processes -------------------------------------------------------------------------


def run_in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `fn(*args)` in a freshly spawned process (its own peak RSS); return its result.

    Not a daemon process: ingest parses each PDF in a child process of its own.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_child_main, args=(sender, fn, args), name=f"folio-bench-{fn.__name__}"
    )
    child.start()
    sender.close()
    try:
        ok, value = receiver.recv()
    except EOFError:
        child.join()
        raise FolioError(
            f"the benchmark's {fn.__name__} process died (exit code {child.exitcode})"
        ) from None
    finally:
        receiver.close()
    child.join()
    if not ok:
        raise FolioError(f"the benchmark's {fn.__name__} failed:\n{value}")
    return dict(value)


def _child_main(sender: Any, fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    import logging
    import warnings

    # The same quiet terminal as the CLI's own process (spawned children start from scratch).
    logging.basicConfig(level=logging.WARNING, format="folio bench: %(levelname)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        result = fn(*args)
    except BaseException:  # reported to the parent, which raises it as a FolioError
        sender.send((False, traceback.format_exc()))
    else:
        sender.send((True, result))
    finally:
        sender.close()


class MemoryWatch:
    """This process's peak RSS: VmHWM and sampled VmRSS from /proc, and getrusage's ru_maxrss."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self._interval = interval_s
        self._stop = threading.Event()
        self._sampled_kb = 0
        self._thread = threading.Thread(target=self._run, name="folio-bench-rss", daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._sampled_kb = max(self._sampled_kb, _status_kb("VmRSS") or 0)
            if self._stop.wait(self._interval):
                return

    def figures(self) -> dict[str, float]:
        self._sampled_kb = max(self._sampled_kb, _status_kb("VmRSS") or 0)
        maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            maxrss_kb //= 1024  # bytes there
        hwm_kb = _status_kb("VmHWM") or 0
        return {
            "peak_rss_mb": round(max(hwm_kb, self._sampled_kb, 0 if hwm_kb else maxrss_kb) / 1024, 1),
            "sampled_peak_rss_mb": round(self._sampled_kb / 1024, 1),
            "ru_maxrss_mb": round(maxrss_kb / 1024, 1),
        }


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def ingest_phase(settings: Settings, plan: BenchPlan) -> dict[str, Any]:
    """Cold ingest into an empty collection, then embedding alone on the stored chunk texts."""
    from rag.engine import EMBED_BATCH, build_engine

    with MemoryWatch() as memory:
        engine = build_engine(settings)
        try:
            started = time.perf_counter()
            embedder = engine.embedder  # loaded here, so the ingest time is documents only
            load_s = time.perf_counter() - started
            report = engine.ingest_paths([plan.docs], collection=plan.collection)
            store = engine.store
            ids = store.chunk_ids(plan.collection)
            stored = store.chunks(ids)
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
    from rag.engine import build_engine
    from rag.prompt import PromptBuilder

    with MemoryWatch() as memory:
        started = time.perf_counter()
        engine = build_engine(settings)
        engine.warm_up()
        ready_s = time.perf_counter() - started
        try:
            started = time.perf_counter()
            engine.retrieve(plan.retrieval[0], collection=plan.collection)  # opens the index
            index_open_ms = (time.perf_counter() - started) * 1000
            _forget_query_cache(engine)
            retrieval_ms = []
            for question in plan.retrieval:
                started = time.perf_counter()
                engine.retrieve(question, collection=plan.collection)
                retrieval_ms.append((time.perf_counter() - started) * 1000)
            _forget_query_cache(engine)  # the answers below embed their questions as users' would
            with _raw_baseline(settings) as raw:

                def time_raw(question: str, tokens: int) -> dict[str, Any]:
                    """The prompt Folio built for `question`, straight through llama.cpp."""
                    passages = engine.retrieve(question, collection=plan.collection)
                    built = PromptBuilder(engine.generator, engine._options.prompt).build(
                        question, passages
                    )
                    assert raw is not None
                    return raw.time(built.prompt, tokens)

                served = asyncio.run(
                    _serve(engine, settings, plan, time_raw if raw is not None else None)
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
        "index_open_ms": index_open_ms,
        "retrieval_ms": retrieval_ms,
        **served,
        **figures,
    }


def _forget_query_cache(engine: RagEngine) -> None:
    """Empty the embedder's query cache, so every measured question is embedded for real."""
    cache = getattr(engine.embedder, "_cache", None)
    if cache is not None and hasattr(cache, "clear"):
        cache.clear()


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
    from rag.models import default_generation_model
    from rag.rawbench import llama_system_info, time_raw_completion

    generation = settings.generator
    model = generation.model_path or default_generation_model()
    options: dict[str, Any] = {
        "context_tokens": generation.context_tokens,
        "threads": generation.threads,
        "batch_tokens": generation.batch_tokens,
        "repeat_penalty": generation.repeat_penalty,
    }
    try:
        loaded = time_raw_completion(model, "Hi", 1, **options)  # load; not measured
        conn.send((True, {**loaded, "system_info": llama_system_info()}))
        while (request := conn.recv()) is not None:
            prompt, max_tokens = request
            conn.send((True, time_raw_completion(model, prompt, max_tokens, **options)))
    except EOFError:
        pass
    except BaseException:
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


# --- the real worker path, with a recording adapter ------------------------------------------


@dataclass
class Trace:
    """What the adapter saw of one job (perf_counter seconds)."""

    submitted: float
    acknowledged: float | None = None
    first_partial: float | None = None
    engine_done: float | None = None  # when the engine returned the final text
    finished: float | None = None
    answer: Answer | None = None
    error: str | None = None
    job: Job | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StampedEngine:
    """The engine as the worker sees it, noting when each answer left it, so the bench can time
    "engine final text -> platform final edit" (the worker's history write, job completion and
    delivery) on the real worker path."""

    def __init__(self, engine: RagEngine) -> None:
        self._engine = engine
        self.finished_at: dict[int, tuple[Answer, float]] = {}

    @property
    def model_name(self) -> str:
        return self._engine.model_name

    def answer(self, question: str, **kwargs: Any) -> Answer:
        answer = self._engine.answer(question, **kwargs)
        # Keyed by identity (the worker hands the same object to the adapter); holding the
        # answer keeps the id from being reused before the adapter looks it up.
        self.finished_at[id(answer)] = (answer, time.perf_counter())
        return answer

    def ingest_bytes(self, name: str, data: bytes, **kwargs: Any) -> Any:
        return self._engine.ingest_bytes(name, data, **kwargs)

    def documents(self, collection: str) -> Any:
        return self._engine.documents(collection)

    def forget(self, name: str, **kwargs: Any) -> Any:
        return self._engine.forget(name, **kwargs)


class RecordingAdapter:
    """An `adapters.base.Adapter` that records when each call arrives instead of posting."""

    platform = PLATFORM

    def __init__(self) -> None:
        self.traces: dict[str, Trace] = {}
        # id(answer) -> when the engine returned it (set by StampedEngine)
        self.engine_done: dict[int, tuple[Answer, float]] = {}

    async def submit(self, core: BotCore, job: Job) -> Trace:
        trace = self.traces[job.idempotency_key] = Trace(time.perf_counter())
        await core.submit(job)
        return trace

    def _trace(self, job: Job) -> Trace:
        return self.traces[job.idempotency_key]

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        trace = self._trace(job)
        if trace.acknowledged is None:
            trace.acknowledged = time.perf_counter()

    async def post_status(self, job: Job, text: str) -> None:
        return None

    async def stream_partial(self, job: Job, text: str) -> None:
        trace = self._trace(job)
        if trace.first_partial is None:
            trace.first_partial = time.perf_counter()

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        return None

    async def post_answer(self, job: Job, answer: Answer) -> None:
        self._finish(job, answer=answer)

    async def post_ingest_report(self, job: Job, report: Any) -> None:
        self._finish(job, error="unexpected ingest report")

    async def post_notice(self, job: Job, text: str) -> None:
        self._finish(job, error=text)

    async def post_error(self, job: Job, message: str) -> None:
        self._finish(job, error=message)

    def _finish(self, job: Job, *, answer: Answer | None = None, error: str | None = None) -> None:
        trace = self._trace(job)
        trace.finished = time.perf_counter()
        if answer is not None and id(answer) in self.engine_done:
            trace.engine_done = self.engine_done.pop(id(answer))[1]
        if trace.first_partial is None and answer is not None:
            # A short answer can finish before the first throttled edit: then the final
            # message is the first text the user sees.
            trace.first_partial = trace.finished
        trace.answer, trace.error, trace.job = answer, error, job
        trace.done.set()


def _question_job(key: str, user: str, text: str, collection: str) -> Job:
    # One thread per question: no earlier turns are added to the prompt as follow-up history.
    return Job(kind=JobKind.QUESTION, platform=PLATFORM, collection=collection, channel="bench",
               user=user, idempotency_key=key, text=text, thread=key)


async def _serve(
    engine: RagEngine,
    settings: Settings,
    plan: BenchPlan,
    time_raw: Callable[[str, int], dict[str, Any]] | None,
) -> dict[str, Any]:
    from bot.core import BotCore, CoreOptions

    queue = settings.queue
    concurrency = settings.generator.concurrency
    per_user = math.ceil(len(plan.queued) / plan.users)
    options = CoreOptions(
        max_pending=max(queue.max_pending, len(plan.queued)),
        max_pending_per_user=max(queue.max_pending_per_user, per_user),
        edit_interval_s=queue.edit_interval_s,
        concurrency=concurrency,
    )
    adapter = RecordingAdapter()
    stamped = StampedEngine(engine)
    adapter.engine_done = stamped.finished_at
    core = BotCore(stamped, settings.bot_db, options)
    core.register(adapter)
    await core.start()
    try:
        sequential = []
        raw_runs = []
        for number, question in enumerate(plan.sequential, start=1):
            job = _question_job(f"seq-{number}", "bench-solo", question, plan.collection)
            trace = await adapter.submit(core, job)
            await asyncio.wait_for(trace.done.wait(), ANSWER_TIMEOUT_S)
            sequential.append(_sequential_record(question, trace))
            if time_raw is not None and sequential[-1]["tokens"]:  # the engine is idle now
                raw_runs.append(await asyncio.to_thread(time_raw, question, sequential[-1]["tokens"]))
            print(f"[bench] answer {number}/{len(plan.sequential)}: "
                  f"{sequential[-1]['answer_s']:.2f}s, {sequential[-1]['tokens']} tokens",
                  file=sys.stderr, flush=True)
        _forget_query_cache(engine)
        queued = await _queue_burst(core, adapter, plan, "queue")
    finally:
        await core.stop()
    serial: dict[str, Any] | None = None
    if concurrency > 1:
        # The same burst again one at a time, through the same (warm) server: the baseline of
        # the gain from parallel requests.
        _forget_query_cache(engine)
        serial_core = BotCore(stamped, settings.bot_db, replace(options, concurrency=1))
        serial_core.register(adapter)
        await serial_core.start()
        try:
            serial = await _queue_burst(serial_core, adapter, plan, "serial")
        finally:
            await serial_core.stop()
    return {"sequential": sequential, "raw_runs": raw_runs, "queue": queued,
            "queue_serial": serial, "concurrency": concurrency,
            "backend": settings.generator.backend,
            "edit_interval_s": queue.edit_interval_s,
            "generator_threads": settings.generator.threads}


async def _queue_burst(
    core: BotCore, adapter: RecordingAdapter, plan: BenchPlan, prefix: str
) -> dict[str, Any]:
    """Submit every queued question at once (from `plan.users` users); wait for all replies."""
    jobs = [
        _question_job(f"{prefix}-{i}", f"bench-user-{i % plan.users}", text, plan.collection)
        for i, text in enumerate(plan.queued)
    ]
    started = time.perf_counter()
    traces = await asyncio.gather(*(adapter.submit(core, job) for job in jobs))
    waiting = [asyncio.create_task(t.done.wait()) for t in traces]
    await asyncio.wait(waiting, timeout=ANSWER_TIMEOUT_S * len(traces))
    for task in waiting:
        task.cancel()
    return _queue_record(traces, started)


def _sequential_record(question: str, trace: Trace) -> dict[str, Any]:
    answer = trace.answer
    assert trace.finished is not None
    timings = answer.timings if answer is not None else None
    return {
        "question": question,
        "error": trace.error,
        "abstained": answer.abstained if answer is not None else None,
        "answer_s": trace.finished - trace.submitted,
        "ttft_s": None if trace.first_partial is None else trace.first_partial - trace.submitted,
        "tokens": answer.tokens if answer is not None else 0,
        "prompt_tokens": answer.prompt_tokens if answer is not None else 0,
        "retrieval_s": timings.retrieval if timings else None,
        "first_token_s": timings.first_token if timings else None,
        "generation_s": timings.generation if timings else None,
        "engine_s": timings.total if timings else None,
        "final_edit_s": (
            None if trace.engine_done is None else trace.finished - trace.engine_done
        ),
    }


def _queue_record(traces: Sequence[Trace], started: float) -> dict[str, Any]:
    finished = [t for t in traces if t.finished is not None]
    waits = [
        t.job.started_at - t.job.created_at
        for t in finished
        if t.job is not None and t.job.started_at is not None and t.job.created_at
    ]
    return {
        "submitted": len(traces),
        "answered": sum(1 for t in finished if t.answer is not None),
        "abstained": sum(1 for t in finished if t.answer is not None and t.answer.abstained),
        "failed": [t.error for t in finished if t.error is not None],
        "total_s": max((t.finished or started for t in traces), default=started) - started,
        "waits_s": waits,
        "ack_ms": [(t.acknowledged - t.submitted) * 1000 for t in traces if t.acknowledged],
    }


# --- the report (pure functions of the phases' figures) --------------------------------------


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _per_s(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def decode_rate(records: Sequence[dict[str, Any]]) -> float | None:
    """Tokens per second after the first: sum(tokens - 1) / sum(generation - first token)."""
    tokens = seconds = 0.0
    for r in records:
        if r.get("tokens", 0) > 1 and r.get("first_token_s") is not None and r.get("generation_s"):
            tokens += r["tokens"] - 1
            seconds += r["generation_s"] - r["first_token_s"]
    return _per_s(tokens, seconds)


def prefill_rate(records: Sequence[dict[str, Any]]) -> float | None:
    """Prompt tokens per second to the first token: sum(prompt tokens) / sum(first token s)."""
    tokens = seconds = 0.0
    for r in records:
        if r.get("tokens") and r.get("first_token_s"):
            tokens += r["prompt_tokens"]
            seconds += r["first_token_s"]
    return _per_s(tokens, seconds)


def breakdown(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Where a generated answer's time goes (medians, seconds): retrieval, prompt building and
    grounding (the engine's other time), generation, and the bot around the engine (queue,
    history, throttled edits, delivery)."""
    def p50(values: list[float]) -> float | None:
        return _r(_median(values), 3)

    return {
        "retrieval": p50([r["retrieval_s"] for r in records]),
        "prompt_and_grounding": p50(
            [r["engine_s"] - r["retrieval_s"] - r["generation_s"] for r in records]
        ),
        "first_token": p50([r["first_token_s"] for r in records if r["first_token_s"] is not None]),
        "generation": p50([r["generation_s"] for r in records]),
        "bot_around_engine": p50([r["answer_s"] - r["engine_s"] for r in records]),
        "engine_final_text_to_final_edit": p50(
            [r["final_edit_s"] for r in records if r.get("final_edit_s") is not None]
        ),
    }


def build_report(
    ingest: dict[str, Any], serve: dict[str, Any], raw: dict[str, Any], machine: dict[str, Any]
) -> dict[str, Any]:
    """One flat dict of figures (seconds, ms, MB, per-second rates), rounded for people."""
    sequential = serve["sequential"]
    generated = [r for r in sequential if r["tokens"]]
    answer_s = [r["answer_s"] for r in sequential]
    ttft_s = [r["ttft_s"] for r in sequential if r["ttft_s"] is not None]
    engine_ttft = [
        r["retrieval_s"] + r["first_token_s"] for r in generated if r["first_token_s"] is not None
    ]
    runs = raw["runs"]
    raw_total = [run["total_s"] for run in runs]
    raw_decode = _per_s(
        sum(max(0, run["tokens"] - 1) for run in runs),
        sum(run["total_s"] - run["ttft_s"] for run in runs),
    )
    folio_median = _median([r["answer_s"] for r in generated])
    engine_median = _median([r["engine_s"] for r in generated])
    raw_median = _median(raw_total)
    queue = serve["queue"]
    serial = serve.get("queue_serial")
    per_min = _per_s(queue["answered"] * 60, queue["total_s"])
    serial_per_min = _per_s(serial["answered"] * 60, serial["total_s"]) if serial else None
    retrieval = serve["retrieval_ms"]
    folio_decode = decode_rate(generated)
    final_edit = [r["final_edit_s"] * 1000 for r in sequential if r.get("final_edit_s") is not None]
    machine = {
        **machine,
        "embedder": ingest.get("embedder"),
        "llama_cpp_system_info": raw.get("system_info"),
    }
    report: dict[str, Any] = {
        "ingest_pages_per_s": _r(_per_s(ingest["pages"], ingest["ingest_seconds"])),
        "ingest_chunks_per_s": _r(_per_s(ingest["chunks"], ingest["ingest_seconds"])),
        "embed_chunks_per_s": _r(_per_s(ingest["embed_chunks"], ingest["embed_seconds"])),
        "ingest_seconds": _r(ingest["ingest_seconds"]),
        "ingest_files": ingest["files"],
        "ingest_pages": ingest["pages"],
        "ingest_chunks": ingest["chunks"],
        "ingest_failures": ingest["failures"],
        "embedder_load_s": _r(ingest["embedder_load_s"]),
        "retrieval_p50_ms": _r(_percentile(retrieval, 0.5), 1),
        "retrieval_p95_ms": _r(_percentile(retrieval, 0.95), 1),
        "index_open_ms": _r(serve["index_open_ms"], 1),
        "ttft_p50_s": _r(_percentile(ttft_s, 0.5)),
        "ttft_p95_s": _r(_percentile(ttft_s, 0.95)),
        "engine_ttft_p50_s": _r(_percentile(engine_ttft, 0.5)),
        "answer_p50_s": _r(_percentile(answer_s, 0.5)),
        "answer_p95_s": _r(_percentile(answer_s, 0.95)),
        "engine_answer_p50_s": _r(engine_median),
        "decode_tokens_per_s": _r(folio_decode, 1),
        "prefill_tokens_per_s": _r(prefill_rate(generated), 1),
        "answer_tokens_p50": _r(_median([r["tokens"] for r in generated]), 1),
        "prompt_tokens_p50": _r(_median([r["prompt_tokens"] for r in generated]), 1),
        "raw_answer_p50_s": _r(_percentile(raw_total, 0.5)),
        "raw_ttft_p50_s": _r(_percentile([run["ttft_s"] for run in runs], 0.5)),
        "raw_decode_tokens_per_s": _r(raw_decode, 1),
        "decode_ratio": _r(folio_decode / raw_decode if folio_decode and raw_decode else None, 3),
        "final_edit_p50_ms": _r(_median(final_edit), 1),
        "final_edit_max_ms": _r(max(final_edit), 1) if final_edit else None,
        "overhead_ratio": _r(
            folio_median / raw_median if folio_median and raw_median else None, 3
        ),
        "overhead_folio_median_s": _r(folio_median, 3),
        "overhead_raw_median_s": _r(raw_median, 3),
        "engine_overhead_ratio": _r(
            engine_median / raw_median if engine_median and raw_median else None, 3
        ),
        "answer_breakdown_p50_s": breakdown(generated),
        "queue_submitted": queue["submitted"],
        "queue_answered": queue["answered"],
        "queue_abstained": queue["abstained"],
        "queue_failed": len(queue["failed"]),
        "queue_total_s": _r(queue["total_s"]),
        "queue_answers_per_min": _r(per_min, 1),
        "queue_concurrency": serve.get("concurrency", 1),
        "queue_answers_per_min_serial": _r(serial_per_min, 1),
        "queue_speedup": _r(per_min / serial_per_min if per_min and serial_per_min else None, 2),
        "queue_wait_p50_s": _r(_percentile(queue["waits_s"], 0.5)),
        "queue_wait_p95_s": _r(_percentile(queue["waits_s"], 0.95)),
        "ack_p95_ms": _r(_percentile(queue["ack_ms"], 0.95), 1),
        "peak_rss_serving_mb": serve["peak_rss_mb"],
        "peak_rss_ingest_mb": ingest["peak_rss_mb"],
        "ready_s": _r(serve["ready_s"]),
        "model": serve["model"],
        "embedding_model": ingest["embedding_model"],
        "questions": {
            "retrieval": len(retrieval),
            "sequential": len(sequential),
            "generated": len(generated),
            "abstained": sum(1 for r in sequential if r["abstained"]),
            "queued": queue["submitted"],
        },
        "settings": {
            "generator_backend": serve.get("backend", "local"),
            "generator_concurrency": serve.get("concurrency", 1),
            "generator_threads": serve.get("generator_threads"),
            "edit_interval_s": serve.get("edit_interval_s"),
        },
        "machine": machine,
    }
    report["targets_met"] = {
        label: _meets(report.get(key), op, limit) for key, op, limit, label in TARGETS
    }
    return report


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spread(values: Sequence[Any]) -> dict[str, float] | None:
    numbers = [v for v in values if _is_number(v)]
    if not numbers:
        return None
    median: float = statistics.median(numbers)
    if all(isinstance(n, int) for n in numbers) and median == int(median):
        median = int(median)  # counts stay counts ("159 pages", not "159.0")
    return {"min": min(numbers), "median": _r(median, 3) if isinstance(median, float) else median,
            "max": max(numbers)}


def combine_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from the repetitions: every number is the median over them (min/median/max
    in `spread`, also for the breakdown), `runs` keeps each repetition's ratio figures side by
    side, and the targets are checked on the medians."""
    if not reports:
        raise ValueError("no repetitions to combine")
    combined: dict[str, Any] = dict(reports[0])
    spread: dict[str, Any] = {}
    for key, first in reports[0].items():
        if _is_number(first) or (first is None and any(_is_number(r.get(key)) for r in reports)):
            figures = _spread([r.get(key) for r in reports])
            if figures is not None:
                spread[key] = figures
                combined[key] = figures["median"]
        elif key == "answer_breakdown_p50_s":
            breakdown_spread = {
                name: _spread([r[key].get(name) for r in reports]) for name in first
            }
            combined[key] = {
                name: None if figures is None else figures["median"]
                for name, figures in breakdown_spread.items()
            }
            spread[key] = breakdown_spread
    combined["spread"] = spread
    combined["runs"] = [
        {"run": number, **{key: r.get(key) for key in PER_RUN_KEYS},
         "load_avg_start": r.get("load_avg_start"), "load_avg_end": r.get("load_avg_end")}
        for number, r in enumerate(reports, start=1)
    ]
    combined["repeats"] = len(reports)
    combined.pop("load_avg_start", None)
    combined.pop("load_avg_end", None)
    combined["targets_met"] = {
        label: _meets(combined.get(key), op, limit) for key, op, limit, label in TARGETS
    }
    return combined


def _meets(value: Any, op: str, limit: float) -> bool | None:
    if not isinstance(value, int | float):
        return None
    return value <= limit if op == "<=" else value >= limit


def format_report(report: dict[str, Any]) -> str:
    """The report as a table for people, with the tutorial baseline and the targets. With more
    than one repetition each timed figure shows its median and (min-max)."""
    spread = report.get("spread", {})

    def show(key: str, unit: str = "", digits: int | None = None) -> str:
        value = report.get(key)
        if value is None:
            return "-"
        text = f"{value:.{digits}f}" if digits is not None else f"{value}"
        figures = spread.get(key)
        if report.get("repeats", 1) > 1 and figures and figures["min"] != figures["max"]:
            text += f" ({figures['min']}-{figures['max']})"
        return f"{text} {unit}".rstrip()

    machine = report["machine"]
    questions = report["questions"]
    on_server = report.get("settings", {}).get("generator_backend", "local") != "local"
    no_raw = "n/a (generation server: no in-process model to compare with)"
    embedder = machine.get("embedder") or {}
    rows = [
        ("CPU features", " ".join(machine.get("cpu_flags") or []) or "unknown"),
        ("embedder", " ".join(
            str(embedder[k]) for k in ("backend", "precision", "identity", "runtime")
            if embedder.get(k)
        ) or "-"),
        ("llama.cpp", _llama_features(machine.get("llama_cpp_system_info"))),
        ("ready (build + warm up both models)", show("ready_s", "s")),
        ("ingest", f"{show('ingest_pages_per_s', 'pages/s')}, "
                   f"{show('ingest_chunks_per_s', 'chunks/s')} "
                   f"({report['ingest_pages']} pages, {report['ingest_chunks']} chunks "
                   f"in {show('ingest_seconds', 's')})"),
        ("embedding alone", show("embed_chunks_per_s", "chunks/s")),
        ("retrieval p50 / p95", f"{show('retrieval_p50_ms', 'ms')} / "
                                f"{show('retrieval_p95_ms', 'ms')}"),
        ("first streamed text p50 / p95", f"{show('ttft_p50_s', 's')} / {show('ttft_p95_s', 's')}"
                                          f" (engine alone {show('engine_ttft_p50_s', 's')})"),
        ("answer p50 / p95", f"{show('answer_p50_s', 's')} / {show('answer_p95_s', 's')}"
                             f" (engine alone {show('engine_answer_p50_s', 's')})"),
        ("decode / prefill", f"{show('decode_tokens_per_s', 'tok/s')} / "
                             f"{show('prefill_tokens_per_s', 'tok/s')}"),
        ("raw llama.cpp answer / TTFT p50", no_raw if on_server else
         f"{show('raw_answer_p50_s', 's')} / {show('raw_ttft_p50_s', 's')}, decode "
         f"{show('raw_decode_tokens_per_s', 'tok/s')}"),
        ("overhead vs raw llama.cpp", no_raw if on_server else
         f"{show('overhead_ratio', 'x')} (engine alone {show('engine_overhead_ratio', 'x')}); "
         f"decode {show('decode_ratio', 'x')} raw"),
        ("final text -> final edit p50", f"{show('final_edit_p50_ms', 'ms')} "
                                         f"(max {show('final_edit_max_ms', 'ms')})"),
        ("answer p50 breakdown", ", ".join(
            f"{name.replace('_', ' ')} {value}s"
            for name, value in report["answer_breakdown_p50_s"].items() if value is not None
        )),
        ("queue", f"{report['queue_answered']}/{report['queue_submitted']} answered in "
                  f"{show('queue_total_s', 's')} = {show('queue_answers_per_min', 'answers/min')}"
                  f", wait p95 {show('queue_wait_p95_s', 's')}, ack p95 {show('ack_p95_ms', 'ms')}"),
        *(
            [("queue, parallel vs one at a time",
              f"{report['queue_concurrency']} at once: {show('queue_answers_per_min')} vs "
              f"{show('queue_answers_per_min_serial', 'answers/min')} = "
              f"{show('queue_speedup', 'x')}")]
            if report.get("queue_answers_per_min_serial") is not None else []
        ),
        ("peak RSS serving / ingest", f"{show('peak_rss_serving_mb', 'MB')} / "
                                      f"{show('peak_rss_ingest_mb', 'MB')} "
                                      "(PDF parser process not included)"),
    ]
    width = max(len(label) for label, _ in rows)
    repeats = report.get("repeats", 1)
    lines = [
        f"folio bench: {report['model']} + {report['embedding_model']} on "
        f"{machine['cores']} cores ({machine['cpu_model']}), load average at start "
        f"{machine.get('load_avg_start')}, end {machine.get('load_avg_end')}",
        f"{questions['retrieval']} questions retrieved, {questions['sequential']} answered one at "
        f"a time ({questions['abstained']} abstained), {questions['queued']} queued at once; "
        + (f"median (min-max) of {repeats} runs" if repeats > 1 else "one run"),
        "",
        *(f"  {label:<{width}}  {value}" for label, value in rows),
    ]
    if report.get("runs"):
        lines += ["", "  each run (ratios from that run's own Folio and raw measurements):"]
        for run in report["runs"]:
            lines.append(
                f"    run {run['run']}: Folio/raw {_fmt(run.get('overhead_ratio'), 'x')} "
                f"({_fmt(run.get('answer_p50_s'), 's')} vs {_fmt(run.get('raw_answer_p50_s'), 's')})"
                f", decode/raw {_fmt(run.get('decode_ratio'), 'x')} "
                f"({_fmt(run.get('decode_tokens_per_s'))} vs "
                f"{_fmt(run.get('raw_decode_tokens_per_s'), 'tok/s')}), ingest "
                f"{_fmt(run.get('ingest_pages_per_s'), 'pages/s')}, final edit "
                f"{_fmt(run.get('final_edit_p50_ms'), 'ms')}, load {run.get('load_avg_start')}"
            )
    lines += [
        "",
        f"  vs tutorial baseline: ingest {show('ingest_pages_per_s')} vs "
        f"{BASELINE['ingest_pages_per_s']} pages/s, answer p50 {show('answer_p50_s')} vs "
        f"{BASELINE['answer_p50_s']} s, RSS {show('peak_rss_serving_mb')} vs "
        f"{BASELINE['peak_rss_mb']:.0f} MB",
        "  targets: " + ", ".join(
            f"{label} {'ok' if met else '-' if met is None else 'MISSED'}"
            for label, met in report["targets_met"].items()
        ),
    ]
    return "\n".join(lines)


def _fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value} {unit}".rstrip()


def _llama_features(system_info: str | None) -> str:
    """The instruction sets llama.cpp was built to use ("AVX512 = 1" or "AVX512 = 1 |" forms)."""
    if not system_info:
        return "-"
    import re

    on = re.findall(r"([A-Z][A-Z0-9_]+)\s*=\s*1", system_info)
    return " ".join(dict.fromkeys(on)) or system_info.strip()[:120]


# --- the machine -----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    from rag.cpu import read_cpu_info

    cpu = read_cpu_info()
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu.model,
        "cpu_flags": cpu.relevant_flags(),
        "python": platform.python_version(),
        "load_avg_start": _load_average(),
    }


def embedder_info(embedder: Any) -> dict[str, Any]:
    """Which embedder ran: backend, precision, identity, and its runtime's view of the CPU."""
    from rag.embed import identity_of

    backend = getattr(embedder, "backend", None)
    info: dict[str, Any] = {
        "backend": backend,
        "precision": getattr(embedder, "precision", None),
        "identity": identity_of(embedder),
    }
    runtime = getattr(embedder, "runtime_info", None)
    if callable(runtime):
        info["runtime"] = runtime()
    return info


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
