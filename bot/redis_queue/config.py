"""Where the shared Redis queue lives, and how long a silent consumer keeps its jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.errors import FolioError

DELIVERY_LEASE_MIN_S = 300.0


class QueueUnavailableError(FolioError):
    """Redis could not be reached (at start, or when a new job was to be stored)."""


@dataclass(frozen=True, slots=True)
class RedisQueueConfig:
    """Where the shared queue lives and how long a silent consumer keeps its jobs."""

    url: str = field(repr=False)  # may carry a password: never logged, see `where`
    prefix: str = "folio"
    claim_timeout_s: float = 60.0
    retention_s: float = 7 * 86400.0
    # How long a finished job's reply belongs to the process that finished it: longer than a
    # final reply can take while the platform is down (the adapters retry it for up to 3
    # minutes), so no other process sends the same reply meanwhile. None = the larger of
    # claim_timeout_s and DELIVERY_LEASE_MIN_S.
    delivery_lease_s: float | None = None

    @property
    def where(self) -> str:
        """The URL without its credentials, for logs and error messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def scrub(self, text: str) -> str:
        """`text` with the URL's password blanked out (for messages built from exceptions)."""
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    @property
    def tick_s(self) -> float:
        """How often running jobs are heartbeated and idle workers look for timed-out jobs."""
        return min(5.0, max(0.05, self.claim_timeout_s / 4))
