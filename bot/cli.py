"""`folio` (and `python -m bot`): the one command-line entry point.

With no sub-command it runs the bot (the Procfile's process). Output is for people; `--json` on
`ask` and `docs` is for scripts. Exit codes: 0 ok, 1 something failed (e.g. a file of an ingest),
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.commands.ask import cmd_ask
from bot.commands.docs import cmd_docs, cmd_forget
from bot.commands.doctor import cmd_doctor
from bot.commands.history import cmd_history
from bot.commands.ingest import cmd_ingest
from bot.errors import FolioError
from bot.logfile import setup_logging
from config.errors import ConfigError

logger = logging.getLogger("folio")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="folio",
        description="Answers questions about your PDFs, with page citations, on a CPU.",
    )
    _add_common_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser(
        "run", help="run the bot: the chat platforms configured, else the terminal chat"
    )
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
    """The measurement commands (evaluation, benchmarks), which add their own options."""
    from bot.measure import bench, evaluate

    evaluate.add_command(commands)
    bench.add_command(commands)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    command = args.command or "run"
    if args.collection and command in ("run", "chat"):
        overrides["default_collection"] = args.collection  # the terminal chat's collection
    from bot.app import load_settings  # the composition root knows the platforms' sections

    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"folio: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings, interactive=command in ("run", "chat"))
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
