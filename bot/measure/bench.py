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
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.measure.evaluate import load_questions
from bot.measure.machine import load_average, machine_info
from bot.measure.phases import ingest_phase, serve_phase
from bot.measure.plan import DEFAULT_DOCS, DEFAULT_QUESTIONS, BenchPlan
from bot.measure.processes import run_in_child
from bot.measure.report import build_report, combine_reports, format_report
from config.errors import ConfigError

if TYPE_CHECKING:
    from config.settings import Settings


REPO_ROOT = Path(__file__).resolve().parents[2]


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
    parser.set_defaults(handler=handle)


def handle(settings: Settings, collection: str, args: argparse.Namespace) -> int:
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
    settings = with_generation_options(settings, args)
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


def with_generation_options(settings: Settings, args: argparse.Namespace) -> Settings:
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
        load_start = load_average()
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
        report["load_avg_start"], report["load_avg_end"] = load_start, load_average()
        reports.append(report)
    combined = combine_reports(reports)
    combined["machine"]["load_avg_end"] = load_average()
    return combined
