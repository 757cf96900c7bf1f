"""The web page for `bot.app`: its `[web]` section; on unless `web.enabled = false`, beside
whatever else runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.registry import Platform
from adapters.web.settings import WebSettings

if TYPE_CHECKING:
    from config.settings import Settings


def platform() -> Platform:
    return Platform("web", "beside", "web page", _configured, _build, WebSettings)


def _configured(settings: Settings) -> bool:
    return settings.section("web", WebSettings).enabled


def _build(core: Any, settings: Settings) -> Any:
    from adapters.web import WebAdapter, WebOptions, web_platform

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    web = settings.section("web", WebSettings)
    return WebAdapter(core, WebOptions(
        host=web.host,
        port=web.port,
        collections=tuple(web_collections(settings)),
        max_file_bytes=settings.ingest.max_file_bytes,
        data_dir=settings.data_dir,
        password=secret(web.password),
        admin_token=secret(web.admin_token),
        secret=secret(web.secret),
        questions_per_minute=web.questions_per_minute,
        writes_per_minute=web.writes_per_minute,
        session_days=web.session_days,
        history_limit=web.history_limit,
        answer_timeout_s=web.answer_timeout_s,
        platform=web_platform(shared_queue=settings.queue.backend == "redis"),
    ))


def web_collections(settings: Settings) -> list[str]:
    """The collections the web page serves (the first is its default)."""
    return list(settings.section("web", WebSettings).collections) or [settings.default_collection]
