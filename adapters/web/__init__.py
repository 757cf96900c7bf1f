"""The web page adapter: chat, documents, queue and history in a browser (aiohttp)."""

from adapters.web.adapter import WebAdapter, WebOptions

__all__ = ["WebAdapter", "WebOptions"]
