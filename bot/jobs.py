"""A platform-neutral unit of work, and what came out of it.

Every platform event that needs the engine becomes a `Job`, committed to SQLite before the
platform is acknowledged; the worker turns it into an `Outcome`, which is stored with the job so a
crash between "answered" and "delivered" re-delivers the stored answer instead of generating again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rag.types import Answer, Citation, FileOutcome, IngestReport, Passage, Timings


class JobKind(StrEnum):
    """What the worker should do with the engine."""

    QUESTION = "question"  # answer `text` over `collection`
    INGEST = "ingest"  # index `attachment` into `collection` (admin)
    FORGET = "forget"  # remove the document named `text` from `collection` (admin)


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the user attached, downloaded at once: platform file links expire."""

    filename: str
    data: bytes

    def __repr__(self) -> str:  # keep megabytes of PDF out of logs and test failures
        return f"Attachment({self.filename!r}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class Job:
    """One request, as the adapter builds it and the queue stores it.

    `platform` + `user` identify the person (fairness, caps, cancel rights); `platform` +
    `collection` + `channel` + `thread` identify the conversation (follow-ups). `reply_to` is
    opaque to the core: a JSON-able dict the adapter uses to find where to answer.
    `idempotency_key` is the platform's id of the delivery (Slack event_id, Discord message or
    interaction id); a second job with the same platform + key is rejected as a duplicate.
    The queue fills in `id`, `status` and the timestamps (epoch seconds).
    """

    kind: JobKind
    platform: str
    collection: str
    channel: str
    user: str
    idempotency_key: str
    text: str = ""
    thread: str = ""
    message_id: str = ""
    attachment: Attachment | None = None
    reply_to: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0
    status: JobStatus = JobStatus.PENDING
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    crashes: int = 0  # attempts that ended in a native crash (of the bot or of the model)

    @property
    def requester(self) -> tuple[str, str]:
        """Who asked: the key for fairness, caps and cancel rights."""
        return (self.platform, self.user)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What `submit` tells the adapter: where the job stands and roughly when it is answered."""

    job_id: int
    position: int  # 1 = next to run
    eta_s: float
    job: Job


@dataclass(frozen=True, slots=True)
class Placement:
    """What the queue knows at acceptance; the core adds the ETA."""

    job: Job
    position: int
    running: int  # jobs being worked on now (they finish before this one starts)
    claimed: Job | None = None  # claimed with its put (`JobQueue.put(claim_for=...)`): running


# --- outcomes: what the worker produced, stored as JSON with the job -------------------------


@dataclass(frozen=True, slots=True)
class AnswerOutcome:
    answer: Answer


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    report: IngestReport


@dataclass(frozen=True, slots=True)
class NoticeOutcome:
    """A one-line confirmation (for example, a document was forgotten)."""

    text: str


@dataclass(frozen=True, slots=True)
class ErrorOutcome:
    """A user-facing failure line (from `bot.replies`), including "Cancelled."."""

    message: str


Outcome = AnswerOutcome | IngestOutcome | NoticeOutcome | ErrorOutcome


def citation_to_dict(citation: Citation) -> dict[str, Any]:
    data: dict[str, Any] = {
        "document": citation.document,
        "page": citation.page,
        "quote": citation.quote,
    }
    if citation.from_image:  # only then, so stored text citations keep their old shape
        data["from_image"] = True
    return data


def passage_to_dict(passage: Passage) -> dict[str, Any]:
    return {
        "chunk_id": passage.chunk_id,
        "document": passage.document,
        "page": passage.page,
        "score": passage.score,
        "dense_score": passage.dense_score,
        "keyword_rank": passage.keyword_rank,
    }


def outcome_to_json(outcome: Outcome) -> str:
    """Serialise an outcome for re-delivery after a crash (passage texts are not kept)."""
    data: dict[str, Any]
    match outcome:
        case AnswerOutcome(answer):
            data = {
                "type": "answer",
                "text": answer.text,
                "citations": [citation_to_dict(c) for c in answer.citations],
                "retrieved": [passage_to_dict(p) for p in answer.retrieved],
                "abstained": answer.abstained,
                "shortened": answer.shortened,
                "model": answer.model,
            }
        case IngestOutcome(report):
            data = {
                "type": "ingest",
                "seconds": report.seconds,
                "outcomes": [
                    {
                        "name": o.name,
                        "status": o.status,
                        "pages": o.pages,
                        "chunks": o.chunks,
                        "reason": o.reason,
                        "ocr_pages": o.ocr_pages,
                        "parser": o.parser,
                    }
                    for o in report.outcomes
                ],
            }
        case NoticeOutcome(text):
            data = {"type": "notice", "text": text}
        case ErrorOutcome(message):
            data = {"type": "error", "message": message}
    return json.dumps(data, ensure_ascii=False)


def outcome_from_json(raw: str) -> Outcome:
    data = json.loads(raw)
    kind = data["type"]
    if kind == "answer":
        return AnswerOutcome(
            Answer(
                text=data["text"],
                citations=[Citation(**c) for c in data["citations"]],
                retrieved=[Passage(text="", **p) for p in data["retrieved"]],
                abstained=data["abstained"],
                shortened=data["shortened"],
                model=data["model"],
                timings=Timings(),
            )
        )
    if kind == "ingest":
        return IngestOutcome(
            IngestReport(
                outcomes=[FileOutcome(**o) for o in data["outcomes"]], seconds=data["seconds"]
            )
        )
    if kind == "notice":
        return NoticeOutcome(data["text"])
    if kind == "error":
        return ErrorOutcome(data["message"])
    raise ValueError(f"unknown outcome type {kind!r}")
