"""`folio` (and `python -m bot`): the one command-line entry point.

With no sub-command it runs the bot (the Procfile's process). Output is for people; `--json` on
`ask` and `docs` is for scripts. Exit codes: 0 ok, 1 something failed (e.g. a file of an ingest),
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bot.errors import FolioError
from config.errors import ConfigError
from config.settings import Settings, load_settings

if TYPE_CHECKING:
    from rag.model_check import ModelCheck

logger = logging.getLogger("folio")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="folio",
        description="Answers questions about your PDFs, with page citations, on a CPU.",
    )
    _add_common_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("run", help="run the bot: Discord/Slack if configured, else terminal chat")
    commands.add_parser("chat", help="chat in the terminal (through the same queue and worker)")

    ingest = commands.add_parser("ingest", help="add PDFs (files or folders) to the collection")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")

    ask = commands.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    ask.add_argument("-v", "--verbose", action="store_true", help="show passages and timings")
    ask.add_argument("--json", action="store_true", help="print one JSON object")

    docs = commands.add_parser("docs", help="list indexed documents")
    docs.add_argument("--json", action="store_true")

    forget = commands.add_parser("forget", help="remove a document from the collection")
    forget.add_argument("name", metavar="FILE")

    history = commands.add_parser("history", help="recent conversations")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--export", action="store_true", help="all conversations as JSONL")

    doctor = commands.add_parser(
        "doctor", help="check the vector index against SQLite (repair it) and the model"
    )
    doctor.add_argument("--json", action="store_true")
    _add_optional_commands(commands)
    for command in commands.choices.values():
        # `folio ingest --collection x FILE` works as well as `folio --collection x ingest FILE`;
        # SUPPRESS keeps an option given before the command when it isn't repeated after it.
        _add_common_options(command, default=argparse.SUPPRESS)
    return parser


def _add_common_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("--collection", default=default,
                        help="collection to use (default: config)")
    parser.add_argument("--data-dir", type=Path, default=default, help="overrides FOLIO_DATA_DIR")
    parser.add_argument("--log-level", default=default,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _add_optional_commands(commands: Any) -> None:
    """Commands that live in their own modules (evaluation, benchmarks)."""
    for module_name in ("bot.evaluate", "bot.bench"):
        try:
            module = __import__(module_name, fromlist=["add_command"])
        except ImportError:
            continue
        module.add_command(commands)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"folio: {exc}", file=sys.stderr)
        return 2
    command = args.command or "run"
    _setup_logging(settings, interactive=command in ("run", "chat"))
    collection = args.collection or settings.default_collection
    try:
        if command in ("run", "chat"):
            from bot.app import run_bot

            return asyncio.run(run_bot(settings, console=True if command == "chat" else None))
        if command == "ingest":
            return cmd_ingest(settings, collection, args.paths, as_json=args.json)
        if command == "ask":
            return cmd_ask(settings, collection, args.question, verbose=args.verbose,
                           as_json=args.json)
        if command == "docs":
            return cmd_docs(settings, collection, as_json=args.json)
        if command == "forget":
            return cmd_forget(settings, collection, args.name)
        if command == "history":
            return asyncio.run(cmd_history(settings, limit=args.limit, export=args.export))
        if command == "doctor":
            return cmd_doctor(settings, as_json=args.json)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(settings, collection, args))
    except ConfigError as exc:
        print(f"folio: {exc}", file=sys.stderr)
        return 2
    except FolioError as exc:
        print(f"folio: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


class LogFileHandler(logging.FileHandler):
    """The log file, which must never be the thing that breaks: on a full or read-only disk it
    says so once on stderr, drops records for a minute, then tries the file again."""

    RETRY_S = 60.0

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self._paused_until = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if time.monotonic() < self._paused_until:
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        if self._paused_until == 0.0:
            print(f"folio: cannot write the log file {self.baseFilename} "
                  f"({error.strerror or error}); logging to the terminal only for now",
                  file=sys.stderr)
        self._paused_until = time.monotonic() + self.RETRY_S
        with contextlib.suppress(OSError):
            self.close()  # reopened (delay=True) on the next try


def _setup_logging(settings: Settings, *, interactive: bool) -> None:
    """Full log to data_dir/logs/folio.log; the terminal only gets warnings (chat stays clean)."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if interactive else logging.ERROR)
    console.setFormatter(logging.Formatter("folio: %(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    log_dir = settings.data_dir / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"folio: no log file: cannot create {log_dir} ({exc.strerror or exc})",
              file=sys.stderr)
    else:
        file_handler = LogFileHandler(log_dir / "folio.log")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        handlers.insert(0, file_handler)
    root.handlers[:] = handlers
    for noisy in ("sentence_transformers", "transformers", "faiss", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _quiet_vendor_output()


def _quiet_vendor_output() -> None:
    """Hide the vendor progress bars and warnings that would clutter a human's terminal."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "0")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


# --- commands ------------------------------------------------------------------------------


def _engine(settings: Settings) -> Any:
    from rag.engine import build_engine

    return build_engine(settings)


def cmd_ingest(settings: Settings, collection: str, paths: list[Path], *, as_json: bool) -> int:
    from tqdm import tqdm

    from bot.render import render_ingest
    from rag.types import FileOutcome

    engine = _engine(settings)
    bars: dict[str, Any] = {}

    def progress(name: str, done: int, total: int) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(
                total=total, desc=_short_name(name), unit="page", leave=True,
                disable=as_json, file=sys.stderr, dynamic_ncols=True,
            )
        bar.update(done - bar.n)

    def file_done(outcome: FileOutcome) -> None:
        bar = bars.pop(outcome.name, None)
        if bar is not None:
            bar.close()
        if not as_json:
            line = {
                "added": "added", "replaced": "replaced (new version)",
                "duplicate": "already indexed", "failed": "FAILED",
            }[outcome.status]
            detail = f": {outcome.reason}" if outcome.reason else ""
            tqdm.write(f"  {outcome.name}: {line}{detail}", file=sys.stderr)

    try:
        report = engine.ingest_paths(
            paths, collection=collection, on_progress=progress, on_file_done=file_done
        )
    finally:
        engine.close()
    if as_json:
        _print_json({
            "collection": collection,
            "files": report.files,
            "pages": report.pages,
            "chunks": report.chunks,
            "duplicates": [o.name for o in report.duplicates],
            "failures": [[o.name, o.reason] for o in report.failures],
            "seconds": round(report.seconds, 2),
        })
    else:
        print(render_ingest(report))
    return 1 if report.failures else 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _short_name(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def answer_record(answer: Any, seconds: float) -> dict[str, Any]:
    """The JSON shape of an answer (shared by `ask --json` and `folio eval`)."""
    from bot.render import render_answer

    return {
        # What the user sees: for an abstention, the reply that names the closest pages.
        "answer": render_answer(answer) if answer.abstained else answer.text,
        "citations": [[c.document, c.page, c.quote] for c in answer.citations],
        "cited_from_images": [[c.document, c.page] for c in answer.citations if c.from_image],
        "retrieved": [[p.document, p.page] for p in answer.retrieved],
        "abstained": answer.abstained,
        "shortened": answer.shortened,
        "seconds": round(seconds, 3),
        "ttft_seconds": (
            round(answer.timings.retrieval + answer.timings.first_token, 3)
            if answer.timings.first_token is not None
            else None
        ),
        "tokens": answer.tokens,
        "model": answer.model,
    }


def cmd_ask(
    settings: Settings, collection: str, question: str, *, verbose: bool, as_json: bool,
    out: TextIO | None = None,
) -> int:
    from bot.render import render_answer
    from rag.types import AnswerProgress

    out = out or sys.stdout
    engine = _engine(settings)
    if not engine.documents(collection):
        engine.close()
        raise FolioError(
            f"Nothing is indexed in collection {collection!r} yet: run `folio ingest PATH` first."
        )
    streamed = [0]

    def progress(event: AnswerProgress) -> None:
        # Stream the answer as it is written (people only; JSON waits for the end).
        if as_json or event.stage != "writing" or not event.partial_text:
            return
        out.write(event.partial_text[streamed[0]:])
        out.flush()
        streamed[0] = len(event.partial_text)

    started = time.perf_counter()
    try:
        answer = engine.answer(question, collection=collection, on_progress=progress)
    finally:
        engine.close()
    seconds = time.perf_counter() - started
    if as_json:
        _print_json({"question": question, **answer_record(answer, seconds)}, out)
        return 0
    final = render_answer(answer)
    if streamed[0]:
        # What streamed was the raw draft; grounding may have dropped unsupported sentences
        # (or abstained), so the checked answer follows it.
        out.write("\n\n" + ("" if answer.abstained else "Checked against the documents:\n"))
    out.write(final + "\n")
    if answer.citations:
        for citation in answer.citations:
            out.write(f'  {citation.render()} "{citation.quote}"\n')
    if verbose:
        out.write("\nRetrieved passages:\n")
        for rank, passage in enumerate(answer.retrieved, start=1):
            out.write(
                f"  {rank}. [{passage.document} p.{passage.page}] fused={passage.score:.4f} "
                f"cosine={passage.dense_score:.3f} keyword_rank={passage.keyword_rank}\n"
                f"     {passage.text[:300]}\n"
            )
        t = answer.timings
        first = f"{t.first_token:.2f}s" if t.first_token is not None else "-"
        out.write(
            f"\nTimings: retrieval {t.retrieval * 1000:.0f} ms, first token {first}, "
            f"generation {t.generation:.2f}s, total {seconds:.2f}s; "
            f"{answer.prompt_tokens} prompt + {answer.tokens} answer tokens ({answer.model})\n"
        )
    return 0


def cmd_docs(settings: Settings, collection: str, *, as_json: bool) -> int:
    from rag.backends import open_store

    store = open_store(settings)
    try:
        docs = store.documents(collection)
    finally:
        store.close()
    if as_json:
        _print_json([
            {"name": d.name, "pages": d.pages, "chunks": d.chunks, "sha256": d.sha256,
             "added_at": d.added_at, "pages_without_text": d.pages_without_text}
            for d in docs
        ])
        return 0
    if not docs:
        print(f"No documents in collection {collection!r}. Add some with: folio ingest PATH")
        return 0
    width = max(len(d.name) for d in docs)
    print(f"{'file':<{width}}  {'pages':>5}  {'chunks':>6}  sha256        added (UTC)")
    for d in docs:
        print(f"{d.name:<{width}}  {d.pages:>5}  {d.chunks:>6}  {d.sha256[:12]}  "
              f"{d.added_at.replace('T', ' ')[:16]}")
    print(f"{len(docs)} document(s), {sum(d.pages for d in docs)} pages in {collection!r}.")
    return 0


def cmd_forget(settings: Settings, collection: str, name: str) -> int:
    engine = _engine(settings)
    try:
        info = engine.forget(name, collection=collection)
    finally:
        engine.close()
    print(f"Forgot {info.name} ({info.pages} pages, {info.chunks} chunks).")
    return 0


async def cmd_history(settings: Settings, *, limit: int, export: bool) -> int:
    from bot.history import History
    from bot.migrations import BotDatabase

    if settings.store.backend == "postgres":  # every node's answers, in the shared database
        from bot.history_postgres import PostgresHistory
        from rag.backends import postgres_options
        from rag.postgres import PostgresDatabase

        shared = PostgresHistory(PostgresDatabase(postgres_options(settings)))
        try:
            if export:
                await shared.export_jsonl(sys.stdout)
                return 0
            entries = await shared.recent(limit=limit)
        finally:
            shared.close()
    else:
        db = await BotDatabase.open(settings.bot_db)
        try:
            history = History(db)
            if export:
                await history.export_jsonl(sys.stdout)
                return 0
            entries = await history.recent(limit=limit)
        finally:
            await db.close()
    if not entries:
        print("No conversations yet.")
        return 0
    from datetime import datetime

    for entry in entries:
        when = datetime.fromtimestamp(entry["asked_at"]).strftime("%Y-%m-%d %H:%M")
        answer = " ".join((entry["answer"] or f"({entry['status']})").split())
        took = f"{entry['total_s']:.1f}s" if entry["total_s"] is not None else "-"
        print(f"{when} {entry['platform']}/{entry['user_id']} [{entry['collection']}] ({took})")
        print(f"  Q: {_clip(entry['question'], 100)}")
        print(f"  A: {_clip(answer, 100)}")
    return 0


def cmd_doctor(settings: Settings, *, as_json: bool) -> int:
    """The vector index against SQLite (repaired if they differ), then the model, in a child."""
    engine = _engine(settings)
    try:
        results = {collection: engine.check(collection) for collection in engine.collections()}
    finally:
        engine.close()
    from rag.model_check import cpu_flags, cpu_model

    model = _check_model(settings)
    if as_json:
        _print_json({
            "collections": {c: ("rebuilt" if r else "ok") for c, r in results.items()},
            "model": None if model is None else {**asdict(model), "uses_amx": model.uses_amx},
            "cpu": {"model": cpu_model(), "flags": cpu_flags()},
        })
    else:
        for collection, rebuilt in results.items():
            state = "vector index rebuilt from SQLite" if rebuilt else "ok"
            print(f"{collection}: {state}")
        if not results:
            print("No collections yet.")
        print(f"CPU: {cpu_model()} ({', '.join(cpu_flags()) or 'no AVX2/AVX-512/AMX flags'})")
        if model is None:
            print(f"model: served by {settings.generator.base_url} (not checked here)")
        else:
            _print_model_check(model)
    return 0 if model is None or model.passed else 1


def _check_model(settings: Settings) -> ModelCheck | None:
    from rag.model_check import check_model
    from rag.models import default_generation_model

    generation = settings.generator
    if generation.backend != "local":
        return None
    return check_model(
        generation.model_path or default_generation_model(),
        extra_buffers=generation.extra_buffer_types,
        threads=generation.threads,
    )


def _print_model_check(check: ModelCheck) -> None:
    print(f"llama.cpp: llama-cpp-python {check.llama_cpp_version or '?'}; "
          f"{check.system_info.strip() or 'no system info'}")
    buffers = ", ".join(f"{name} {mib:.0f} MiB" for name, mib in check.buffers.items())
    setting = {True: "on", False: "off", None: "?"}[check.extra_buffers]
    tried = ", ".join(check.extra_types) or "none"
    amx = "; AMX IN USE (see README: AMX)" if check.uses_amx else ""
    print(f"weights: {buffers or 'no buffer lines in the load log'}; extra buffer types "
          f"{setting} (tried: {tried}){amx}")
    if check.passed:
        print(f"model check: passed, {Path(check.model).name} generated "
              f"{check.generated.strip()[:40]!r} in {check.seconds:.1f}s")
    else:
        print(f"model check: FAILED, {Path(check.model).name}: {check.error}")


def _print_json(value: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(value, ensure_ascii=False, indent=None) + "\n")
