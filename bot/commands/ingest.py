"""`folio ingest PATH...`: files and folders, a progress bar per file, one line per outcome."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bot.commands.output import open_engine, print_json, short_name
from config.settings import Settings


def cmd_ingest(settings: Settings, collection: str, paths: list[Path], *, as_json: bool) -> int:
    from tqdm import tqdm

    from bot.render import render_ingest
    from rag.types import FileOutcome

    engine = open_engine(settings)
    bars: dict[str, Any] = {}

    def progress(name: str, done: int, total: int) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(
                total=total, desc=short_name(name), unit="page", leave=True,
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
        print_json({
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
