"""What the Discord adapter needs from the bot core (`bot.core.BotCore` provides it)."""

from __future__ import annotations

from typing import Protocol

from adapters.base import RemembersReplies
from bot.history import HistoryEntry
from bot.jobs import Accepted, Job
from rag.types import DocumentInfo


class CorePort(RemembersReplies, Protocol):
    async def submit(self, job: Job) -> Accepted:
        """Commit and queue the job; raises QueueFullError or DuplicateJobError."""
        ...

    async def cancel(self, platform: str, user: str, job_id: int | None = None) -> Job:
        """Cancel the user's latest queued or running job (NotFoundError if there is none)."""
        ...

    async def history(self, platform: str, user: str, *, limit: int = 10) -> list[HistoryEntry]: ...

    async def cancel_for_deleted_message(self, platform: str, message_id: str) -> Job | None:
        """Cancel the active job asked by a message that was deleted (None if there is none)."""
        ...

    async def documents(self, collection: str) -> list[DocumentInfo]: ...
