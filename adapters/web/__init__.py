"""The web page adapter: chat, documents, queue and history in a browser (aiohttp)."""

from adapters.web.adapter import WebAdapter, WebOptions, web_platform

__all__ = ["WebAdapter", "WebOptions", "web_platform"]
