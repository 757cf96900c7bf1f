"""A job as a Redis hash and back (the field names the Lua scripts read and write)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from bot.jobs import Attachment, Job, JobKind, JobStatus

LIGHT_FIELDS = (
    "kind", "status", "platform", "collection", "channel", "thread", "user", "message_id",
    "text", "attachment_name", "reply_to", "idempotency_key", "created_at", "started_at",
    "finished_at", "attempts", "reply_patch", "crashes",
)


def as_text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8")


def _seconds(raw: bytes | None) -> float | None:
    return None if raw is None or raw == b"" else float(raw)


def job_from(job_id: int, fields: Mapping[str, bytes | None], *, with_attachment: bool) -> Job:
    attachment = None
    name = fields.get("attachment_name")
    if with_attachment and name is not None:
        attachment = Attachment(as_text(name), bytes(fields.get("attachment") or b""))
    return Job(
        id=job_id,
        kind=JobKind(as_text(fields.get("kind"))),
        status=JobStatus(as_text(fields.get("status"))),
        platform=as_text(fields.get("platform")),
        collection=as_text(fields.get("collection")),
        channel=as_text(fields.get("channel")),
        thread=as_text(fields.get("thread")),
        user=as_text(fields.get("user")),
        message_id=as_text(fields.get("message_id")),
        text=as_text(fields.get("text")),
        attachment=attachment,
        reply_to={
            **json.loads(as_text(fields.get("reply_to")) or "{}"),
            **json.loads(as_text(fields.get("reply_patch")) or "{}"),
        },
        idempotency_key=as_text(fields.get("idempotency_key")),
        created_at=_seconds(fields.get("created_at")) or 0.0,
        started_at=_seconds(fields.get("started_at")),
        finished_at=_seconds(fields.get("finished_at")),
        attempts=int(fields.get("attempts") or 0),
        crashes=int(fields.get("crashes") or 0),
    )


def job_fields(job: Job) -> list[str | bytes]:
    """The job as the flat field/value list `HSET` takes (status and times are the script's)."""
    pairs: list[tuple[str, str | bytes]] = [
        ("kind", job.kind.value),
        ("platform", job.platform),
        ("collection", job.collection),
        ("channel", job.channel),
        ("thread", job.thread),
        ("user", job.user),
        ("message_id", job.message_id),
        ("text", job.text),
        ("reply_to", json.dumps(dict(job.reply_to), ensure_ascii=False)),
        ("idempotency_key", job.idempotency_key),
    ]
    if job.attachment is not None:
        pairs += [("attachment_name", job.attachment.filename), ("attachment", job.attachment.data)]
    return [item for pair in pairs for item in pair]
