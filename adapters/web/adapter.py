"""The web page as one more adapter: an aiohttp server beside Discord, Slack and the terminal.

Its jobs have platform "web"; the core calls the `adapters.base.Adapter` methods below, which
turn each call into an event for whoever watches the job (the chat page's stream, a waiting
`POST /api/ask`). It shares the core's queue, worker, history and collections; it never calls
the engine.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from adapters.base import StreamLimits
from adapters.web.live import LiveJobs
from bot.errors import FolioError
from bot.history import HistoryEntry
from bot.jobs import Accepted, Job
from bot.render import ABSTAIN_TEXT, SHORTENED_MARK, format_eta, render_ingest_progress
from rag.types import Answer, DocumentInfo, IngestReport

logger = logging.getLogger(__name__)

PLATFORM = "web"


def web_platform(*, shared_queue: bool) -> str:
    """The platform name of this page's jobs: "web", or "web-<host>" when a queue shared by
    several processes (Redis) could hand a job to another node, whose page would have no one
    watching it. One page per host (they would share the port anyway), and stable across
    restarts, so a user's history stays theirs."""
    if not shared_queue:
        return PLATFORM
    import re
    import socket

    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()) or "host"
    return f"{PLATFORM}-{host}"


class WebCore(Protocol):
    """What the page needs from `bot.core.BotCore`."""

    async def submit(self, job: Job) -> Accepted: ...

    async def cancel(
        self, platform: str, user: str, job_id: int | None = None, *, as_admin: bool = False
    ) -> Job: ...

    async def history(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]: ...

    async def all_history(self, *, limit: int = 50) -> list[dict[str, Any]]: ...

    async def export_history(self, out: TextIO) -> int: ...

    async def documents(self, collection: str) -> list[DocumentInfo]: ...

    async def active_jobs(self) -> list[tuple[Job, int, float]]: ...

    async def original_file(self, collection: str, name: str) -> Path | None: ...


@dataclass(frozen=True, slots=True)
class WebOptions:
    """Everything the server needs from the settings (secrets as plain strings, or None)."""

    host: str
    port: int
    collections: tuple[str, ...]
    max_file_bytes: int
    data_dir: Path
    password: str | None = None
    admin_token: str | None = None
    secret: str | None = None
    questions_per_minute: int = 10
    writes_per_minute: int = 30
    session_days: float = 30.0
    history_limit: int = 50
    answer_timeout_s: float = 600.0
    max_files_per_upload: int = 20
    platform: str = PLATFORM  # see web_platform

    @property
    def loopback(self) -> bool:
        from adapters.web.settings import is_loopback

        return is_loopback(self.host)


def file_url(collection: str, document: str, page: int) -> str:
    """The link that opens a stored PDF at a page (the browser's viewer reads `#page=N`)."""
    from urllib.parse import quote

    return f"/files/{quote(collection, safe='')}/{quote(document, safe='')}#page={page}"


def answer_event(job: Job, answer: Answer) -> dict[str, Any]:
    """`folio ask --json`'s object, plus what the page shows: links and the closest pages."""
    from bot.answer_json import answer_record

    record = {"question": job.text, **answer_record(answer, time.time() - job.created_at)}
    record["job"] = job.id
    record["collection"] = job.collection
    record["links"] = [
        {"document": c.document, "page": c.page, "quote": c.quote,
         "url": file_url(job.collection, c.document, c.page)}
        for c in answer.citations
    ]
    record["closest"] = [
        {"document": d, "page": p, "url": file_url(job.collection, d, p)}
        for d, p in answer.closest_pages()
    ] if answer.abstained else []
    if answer.abstained:
        record["answer"] = ABSTAIN_TEXT
    elif answer.shortened:
        record["note"] = SHORTENED_MARK
    return record


def ingest_event(report: IngestReport) -> dict[str, Any]:
    return {
        "files": [
            {"name": o.name, "status": o.status, "pages": o.pages, "chunks": o.chunks,
             "reason": o.reason}
            for o in report.outcomes
        ],
        "seconds": round(report.seconds, 3),
    }


class WebAdapter:
    """The web page: serves HTTP on `options.host:port` and answers the core's calls for its jobs."""

    limits = StreamLimits()  # the page streams at the core's pace, without a length limit

    def __init__(self, core: WebCore, options: WebOptions) -> None:
        self._core = core
        self.options = options
        self.platform = options.platform
        self.live = LiveJobs()
        self._runner: Any = None
        self.url = ""  # set by start(), with the real port (port 0 = any free one)

    # ---- lifecycle (called by bot.app) -----------------------------------------------------

    async def start(self) -> None:
        from aiohttp import web

        from adapters.web.routes import build_app

        app = build_app(self._core, self.options, self.live)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.options.host, self.options.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise FolioError(
                f"cannot listen on {self.options.host}:{self.options.port} "
                f"({exc.strerror or exc}); set FOLIO_WEB__PORT to another port, or "
                "FOLIO_WEB__ENABLED=false"
            ) from exc
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self.options.port
        host = self.options.host
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        logger.info("web page at %s", self.url)
        print(f"Folio web page: {self.url}", file=sys.stderr, flush=True)
        if not self.options.loopback and not self.options.admin_token:
            logger.warning("the web page is reachable from other machines and "
                           "FOLIO_WEB_ADMIN_TOKEN is not set: nobody can add or forget "
                           "documents from it")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- adapters.base.Adapter ---------------------------------------------------------------

    async def acknowledge(self, job: Job, position: int, eta_s: float) -> None:
        self.live.publish(job.id, "queued", {
            "job": job.id, "position": position, "eta_s": round(eta_s, 1), "eta": format_eta(eta_s),
        })

    async def post_status(self, job: Job, text: str) -> None:
        self.live.publish(job.id, "status", {"text": text})

    async def stream_partial(self, job: Job, text: str) -> None:
        self.live.publish(job.id, "partial", {"text": text})

    async def post_ingest_progress(self, job: Job, name: str, done: int, total: int) -> None:
        self.live.publish(job.id, "progress", {
            "name": name, "done": done, "total": total,
            "text": render_ingest_progress(name, done, total),
        })

    async def post_answer(self, job: Job, answer: Answer) -> None:
        self.live.publish(job.id, "answer", answer_event(job, answer))

    async def post_ingest_report(self, job: Job, report: IngestReport) -> None:
        self.live.publish(job.id, "ingest", ingest_event(report))

    async def post_notice(self, job: Job, text: str) -> None:
        self.live.publish(job.id, "notice", {"text": text})

    async def post_error(self, job: Job, message: str) -> None:
        self.live.publish(job.id, "error", {"message": message})
