"""The `[web]` settings section (env: FOLIO_WEB__PORT=...), which this folder declares.

Its secrets are fields here but come only from the environment: FOLIO_WEB_PASSWORD (needed to
bind anywhere but loopback), FOLIO_WEB_ADMIN_TOKEN (who may add and forget documents) and
FOLIO_WEB_SECRET (the key that signs session cookies). A config file that contains one is
refused (see `config.sections`).
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr, field_validator, model_validator

from config.sections import SectionSettings, env_secret


class WebSettings(SectionSettings):
    """Where the page listens, which collections it serves, and its per-user limits."""

    password: SecretStr | None = env_secret(
        "FOLIO_WEB_PASSWORD", "Everyone signs in with it; needed off loopback."
    )
    admin_token: SecretStr | None = env_secret(
        "FOLIO_WEB_ADMIN_TOKEN", "Whoever enters it at sign-in is an admin."
    )
    secret: SecretStr | None = env_secret(
        "FOLIO_WEB_SECRET", "Signs session cookies; else a random key kept in the data dir."
    )

    enabled: bool = Field(
        default=True, description="Serve the web page beside the other adapters (`folio run`)."
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address to listen on. Anything but loopback needs FOLIO_WEB_PASSWORD.",
    )
    port: int = Field(default=8765, ge=0, le=65535, description="0 = any free port.")
    collections: list[str] = Field(
        default_factory=list,
        description="Collections the page may ask and manage; empty = default_collection only. "
        "Discord guilds' and Slack teams' collections are never reachable unless listed.",
    )
    questions_per_minute: int = Field(
        default=10, ge=1, le=10000, description="Questions one user may ask per minute."
    )
    writes_per_minute: int = Field(
        default=30, ge=1, le=10000,
        description="Other writes (uploads, forget, cancel, sign-in) per user or address per minute.",
    )
    session_days: float = Field(default=30.0, gt=0, le=3650)
    history_limit: int = Field(default=50, ge=1, le=1000)
    answer_timeout_s: float = Field(
        default=600.0, gt=0, description="How long POST /api/ask waits for its answer."
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty (127.0.0.1 keeps the page on this machine)")
        return value

    @field_validator("collections")
    @classmethod
    def _collections(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("collection names must not be empty")
        return value

    @model_validator(mode="after")
    def _exposure(self) -> WebSettings:
        if self.enabled and not self.loopback and self.password is None:
            raise ValueError(
                f"web.host = {self.host!r} is reachable from other machines: set "
                "FOLIO_WEB_PASSWORD (and FOLIO_WEB_ADMIN_TOKEN for admins), bind 127.0.0.1, "
                "or turn the page off with FOLIO_WEB__ENABLED=false"
            )
        return self

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the page."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
